"""How the figures of worker processes make the server's (ksr/core/stats_view.py): counters
and histograms added up, per-worker gauges added up, settings and shared tables taken once;
every statistic a module registers has a description (the HELP text of /metrics)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ksr.core.server import Server
from ksr.core.stats import ONE
from ksr.core.stats_view import STALE, stats_view
from ksr.modules.xhttp_prom.metrics import Family, merge_json
from tests.support import make_config, write_script

MODULES = [
    "sl", "tm", "rr", "sanity", "registrar", "usrloc", "dialog", "acc", "xhttp", "xhttp_prom",
    "websocket", "pike", "jsonrpcs", "auth", "maxfwd", "htable", "permissions",
]  # fmt: skip


def _server(tmp: Path, modparam: dict[str, Any] | None = None) -> Server:
    server = Server(
        make_config(MODULES, modparam or {}),
        write_script(tmp, "function ksr_request_route() end", ".lua"),
    )
    server.load_script()
    return server


def test_every_statistic_has_a_description(tmp_path: Path) -> None:
    server = _server(tmp_path)
    missing = [f"{g}:{n}" for g, n, _ in server.stats.select("all") if not server.stats.doc(g, n)]
    assert missing == []
    assert all(h.doc for h in server.stats.histograms.values())


def test_merge_by_kind(tmp_path: Path) -> None:
    server = _server(tmp_path, {"registrar": {"max_expires": 3600}})
    view = stats_view(server)
    server.stats.counter("core", "rcv_requests").inc(5)
    server.latency.request_done("INVITE", time.time() - 0.2)
    local = view.snapshot()
    other = view.snapshot(full=False)  # a second worker with the same figures, as pushed
    other["g"]["shmem:used_size"] = local["g"]["shmem:used_size"]
    other["w"] = 1
    other["c"]["core:rcv_requests"] = 7
    other["g"]["tmx:inuse_transactions"] = 3
    other["h"]["sip_request_duration_seconds"]["s"].append([["BYE"], [1] + [0] * 16, 0.0001])
    merged = view.merge([local, other])
    assert merged.value("core", "rcv_requests") == 12
    assert merged.value("tmx", "inuse_transactions") == 3
    assert merged.value("registrar", "max_expires") == 3600  # a setting: once
    assert server.stats.merge_mode("registrar", "max_expires") == ONE
    assert merged.value("shmem", "total_size") == local["o"]["shmem:total_size"]
    assert merged.value("shmem", "used_size") == local["g"]["shmem:used_size"] * 2
    hist = merged.histograms["sip_request_duration_seconds"]
    counts, total = hist.series[("INVITE",)]
    assert sum(counts) == 2  # both workers' INVITE
    assert 0.3 < total < 0.5
    assert sum(hist.series[("BYE",)][0]) == 1
    assert merged.kind("core", "rcv_requests") == "counter"
    assert merged.kind("tmx", "inuse_transactions") == "gauge"
    # a worker silent for too long: its gauges are left out, its counters stay
    other["t"] -= STALE + 1
    merged = view.merge([local, other])
    assert merged.value("tmx", "inuse_transactions") == 0
    assert merged.value("core", "rcv_requests") == 12


def test_odd_methods_share_one_series(tmp_path: Path) -> None:
    server = _server(tmp_path)
    for i in range(100):
        server.latency.request_done(f"X{i}", time.time())
    assert set(server.stats.histograms["sip_request_duration_seconds"].series) == {("other",)}


def test_script_metrics_merge() -> None:
    a, b = Family("counter", "c", ("m",)), Family("counter", "c", ("m",))
    a.add(("INVITE",), 2, 0)
    b.add(("INVITE",), 3, 0)
    b.add(("BYE",), 1, 0)
    assert merge_json("counter", [a.to_json(), b.to_json()]) == {("INVITE",): 5, ("BYE",): 1}
    g1, g2 = Family("gauge", "g"), Family("gauge", "g")
    g1.set((), 1.0, 0)
    time.sleep(0.001)
    g2.set((), 2.0, 0)
    assert merge_json("gauge", [g2.to_json(), g1.to_json()]) == {(): 2.0}  # the newest
    h1, h2 = Family("histogram", "h", (), (1.0, 2.0)), Family("histogram", "h", (), (1.0, 2.0))
    h1.observe((), 0.5, 0)
    h2.observe((), 1.5, 0)
    assert merge_json("histogram", [h1.to_json(), h2.to_json()]) == {(): [1, 2, 2.0, 2]}


def test_db_mode_3_counts_scan_once(tmp_path: Path) -> None:
    """Reading the usrloc statistics again and again costs one table read per COUNTS_CACHE."""
    db = tmp_path / "ul.sqlite"
    server = _server(tmp_path, {"usrloc": {"db_mode": 3, "db_url": f"sqlite://{db}"}})
    reads = server.stats.histograms["db_query_duration_seconds"]

    def table_reads() -> int:
        return sum(
            sum(s.counts) for k, s in reads.series.items() if k[0] == "sqlite" and k[1] != "put"
        )

    before = table_reads()
    for _ in range(5):
        server.stats.select("usrloc:")
    assert 1 <= table_reads() - before <= 2  # the first read fills the cache
    assert server.stats.merge_mode("usrloc", "registered_users") == ONE


def test_grafana_dashboard_uses_exported_names(tmp_path: Path) -> None:
    """Every metric the dashboard in docs/ queries is one /metrics exports."""
    import json
    import re

    from tests.support import REPO

    server = _server(tmp_path)
    server.latency.request_done("INVITE", time.time())
    server.latency.route_done("ksr_request_route", 0.001)
    server.latency.db.observe(0.001, "sqlite", "get")
    text = server.module("xhttp_prom").render().decode()
    exported = {line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE")}
    exported |= {f"{n}_{s}" for n in exported for s in ("bucket", "count", "sum")}
    dash = json.loads((REPO / "docs" / "grafana-ksr.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\b(ksr_[A-Za-z0-9_]+)\b", e)}
    used -= {"ksr_core_rcv_requests_"}  # the prefix of a name regex
    used -= {"ksr_handoff_dropped_total"}  # exists with worker processes only
    assert used - exported == set()
    assert any("ksr_core_rcv_requests_invite_total" == n for n in exported)


def test_a_restarted_worker_is_counted_from_what_its_predecessor_had(tmp_path: Path) -> None:
    """The bookkeeping of the worker that answers (no sockets: snapshots handed in directly)."""
    import json
    import zlib

    server = _server(tmp_path)
    view = stats_view(server)
    server.stats.counter("core", "rcv_requests").inc(1)

    def note(pid: int, count: int, inh: bool) -> None:
        snap = view.snapshot(full=False)
        snap.update(w=1, pid=pid, inh=inh)
        snap["c"] = {**snap["c"], "core:rcv_requests": count}
        view._on_note(zlib.compress(json.dumps(snap).encode()))

    def total() -> int | None:
        return view.current().value("core", "rcv_requests")

    note(100, 40, True)
    assert total() == 41
    note(200, 3, False)  # worker 1 restarted, has not taken over yet: its old 40 still count
    assert total() == 44
    assert view.snapshot_of(1, 200)["c"]["core:rcv_requests"] == 40  # what it asks for
    note(200, 45, True)  # took them over: 40 + 5 of its own
    assert total() == 46
    assert view.floors == {}
    assert view.snapshot_of(1, 300)["c"]["core:rcv_requests"] == 45  # a further restart


async def test_status_page_with_one_process(tmp_path: Path) -> None:
    """Without worker processes the page and its data come from this process alone."""
    import json

    from tests.support import UdpPeer, running_server, sip_request, udp_addr
    from tests.transport.clients import addr, connect, http_request

    script = """
function ksr_request_route() KSR.sl.sl_send_reply(200, "OK") end
function http_event(evname)
  if KSR.status.dispatch() < 0 then KSR.xhttp.xhttp_reply(404, "Not Found", "", "") end
end
"""
    config = make_config(
        ["sl", "xhttp", "status"],
        {"xhttp": {"event_callback": "http_event"}, "status": {"status_path": "/ops"}},
        listen=["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
    )
    async with running_server(config, write_script(tmp_path, script, ".lua")) as server:
        peer = await UdpPeer().bind()
        for i in range(3):
            await peer.send(sip_request(port=peer.port, call_id=f"s-{i}"), udp_addr(server))
            assert (await peer.recv_reply()).status == 200
        peer.close()
        stream = await connect(*addr(server, "tcp"))
        page = await http_request(stream, "GET", "/ops")
        data = await http_request(stream, "GET", "/ops.json?x=1")
        other = await http_request(stream, "GET", "/status")
        await stream.aclose()
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert b'<svg id="chart"' in page.body
    for loads in (b"src=", b"href=", b"@import", b"url("):  # nothing is loaded from elsewhere
        assert loads not in page.body
    d = json.loads(data.body)
    assert d["figures"]["requests"] == 3
    assert d["figures"]["workers"] == 1
    assert d["script"][0]["version"] == 1
    assert d["listeners"][0]["socket"].startswith("udp:127.0.0.1:")
    assert other.status == 404
