"""``ksr run -n 2`` scraped over and over with traffic in between: whichever worker takes the
connection, /metrics shows the whole server (counters equal the traffic sent, never go
backwards; settings are not added up per worker), promtool finds nothing to complain about,
and the stats.* RPC commands agree."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ksr.rpc_client import call as rpc_call
from tests.support import ksr_process, write_script

from .helpers import http_get, samples, send_options

SCRIPT = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "OK")
end

function http_event(evname)
  if KSR.xhttp.get_hu() == "/pid" then
    KSR.xhttp.xhttp_reply(200, "OK", "text/plain", tostring(KSR.pv.get("$pp")))
    return 1
  end
  if KSR.xhttp_prom.check_uri() > 0 then
    KSR.xhttp_prom.dispatch()
    return 1
  end
  KSR.xhttp.xhttp_reply(404, "Not Found", "", "")
end
"""
CONFIG = """
loadmodule = ["sl", "xhttp", "xhttp_prom", "jsonrpcs", "usrloc", "registrar"]
[modparam.xhttp]
event_callback = "http_event"
[modparam.registrar]
max_expires = 1234
[modparam.xhttp_prom]
xhttp_prom_counter = "name=unused; label=a;"
"""


def _monotonic(name: str) -> bool:
    base = name.partition("{")[0]
    return base.endswith(("_total", "_count", "_sum", "_bucket"))


def _scrape(port: int) -> tuple[dict[str, float], str, bytes]:
    deadline = time.monotonic() + 5
    status, _, body = http_get(port, "/metrics", "/pid")
    while status == 503:  # a worker still taking over its predecessor's counters
        assert time.monotonic() < deadline
        time.sleep(0.05)
        status, _, body = http_get(port, "/metrics", "/pid")
    assert status == 200
    text, _, pid = body.partition(b"\0")
    return samples(text.decode()), text.decode(), pid


def _stats(sock: str, *specs: str) -> dict[str, int]:
    reply = rpc_call(
        sock, {"jsonrpc": "2.0", "method": "stats.get_statistics", "params": list(specs), "id": 1}
    )
    out = {}
    for line in reply["result"]:
        k, _, v = line.partition(" = ")
        out[k] = int(v)
    return out


def _two_workers(tmp: Path) -> Any:
    return ksr_process(write_script(tmp, SCRIPT), CONFIG, extra_args=["-n", "2"])


def _wait_both(k: dict[str, Any]) -> None:
    deadline = time.monotonic() + 15
    while k["log"].read_text().count("listening on") < 2:
        assert time.monotonic() < deadline, k["log"].read_text()
        time.sleep(0.05)


def test_scrapes_of_two_workers_tell_the_truth(tmp_path: Path) -> None:
    with _two_workers(tmp_path) as k:
        _wait_both(k)
        port = k["port"]
        prev: dict[str, float] = {}
        pids: set[bytes] = set()
        sent = 0
        scrapes = 0
        for _ in range(4):
            send_options(port, 15)
            sent += 15
            deadline = time.monotonic() + 10
            settled = 0
            while settled < 4:  # until the figures match, then a few more scrapes
                m, _, pid = _scrape(port)
                scrapes += 1
                pids.add(pid)
                for name, v in prev.items():
                    if _monotonic(name) and name in m:
                        assert m[name] >= v, f"{name} went back from {v} to {m[name]}"
                prev = m
                if m["ksr_core_rcv_requests_total"] == sent:
                    settled += 1
                else:
                    assert settled == 0, "a settled figure changed without traffic"
                    assert m["ksr_core_rcv_requests_total"] < sent
                    assert time.monotonic() < deadline, m["ksr_core_rcv_requests_total"]
                    time.sleep(0.1)
            assert m["ksr_core_rcv_requests_options_total"] == sent
            assert m["ksr_sl_2xx_replies_total"] == sent
            assert m['ksr_sip_request_duration_seconds_count{method="OPTIONS"}'] == sent
            assert m['ksr_sip_request_duration_seconds_bucket{le="+Inf",method="OPTIONS"}'] == sent
            assert m['ksr_route_duration_seconds_count{route="ksr_request_route"}'] == sent
            assert m["ksr_registrar_max_expires"] == 1234  # a setting: not added up
            assert m["ksr_stats_workers"] == 2
        # every worker answered some of the scrapes (new connections spread over both)
        assert len(pids) == 2, (pids, scrapes)
        st = _stats(k["rpc"], "core:", "registrar:max_expires", "shmem:total_size")
        assert st["core:rcv_requests"] == sent
        assert st["registrar:max_expires"] == 1234
        with open("/proc/meminfo") as f:
            total = int(f.readline().split()[1]) * 1024
        assert st["shmem:total_size"] == total
        fetched = rpc_call(
            k["rpc"],
            {"jsonrpc": "2.0", "method": "stats.fetch", "params": ["registrar:"], "id": 2},
        )["result"]
        assert fetched["registrar.max_expires"] == "1234"
        # clear: the whole server's value, then every worker's counter is back to 0
        cleared = rpc_call(
            k["rpc"],
            {
                "jsonrpc": "2.0",
                "method": "stats.clear_statistics",
                "params": ["core:rcv_requests"],
                "id": 3,
            },
        )["result"]
        assert cleared == [f"core:rcv_requests = {sent}"]
        assert _stats(k["rpc"], "core:rcv_requests") == {"core:rcv_requests": 0}


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian package prometheus)",
)
def test_promtool_finds_nothing(tmp_path: Path) -> None:
    with _two_workers(tmp_path) as k:
        _wait_both(k)
        send_options(k["port"], 3)
        _, text, _ = _scrape(k["port"])
    assert "# HELP ksr_core_rcv_requests_total SIP requests received" in text
    out = subprocess.run(
        ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    assert out.stdout == out.stderr == b""


def _worker_pid(sock: str, index: int) -> int:
    reply = rpc_call(sock, {"jsonrpc": "2.0", "method": "core.psx", "params": [], "id": 9})
    for p in reply["result"]:
        if f"child={index} " in p["DSC"]:
            return int(p["PID"])
    raise AssertionError(reply)


def test_a_restarted_worker_takes_over_its_counters(tmp_path: Path) -> None:
    """Worker 1 is killed and restarted by the supervisor: the server's counters do not drop
    (Prometheus would take that for a reset of the whole counter) and still equal the traffic."""
    with _two_workers(tmp_path) as k:
        _wait_both(k)
        port, log = k["port"], k["log"]
        prev: dict[str, float] = {}

        def scrape_until(sent: int) -> dict[str, float]:
            nonlocal prev
            deadline = time.monotonic() + 10
            while True:
                try:
                    m, _, _ = _scrape(port)
                except ConnectionError:  # queued on the killed worker's socket: ask again
                    assert time.monotonic() < deadline
                    continue
                for name, v in prev.items():
                    if _monotonic(name) and name in m:
                        assert m[name] >= v, f"{name} went back from {v} to {m[name]}"
                prev = m
                if m["ksr_core_rcv_requests_total"] == sent:
                    return m
                assert time.monotonic() < deadline, (m["ksr_core_rcv_requests_total"], sent)
                time.sleep(0.1)

        send_options(port, 30)
        scrape_until(30)
        time.sleep(1.5)  # both workers' last counts have been pushed
        old = _worker_pid(k["rpc"], 1)
        os.kill(old, signal.SIGKILL)
        for _ in range(5):  # worker 1 is down: worker 0 answers with what it last heard
            scrape_until(30)
        deadline = time.monotonic() + 20
        while "took over the counters" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        assert _worker_pid(k["rpc"], 1) != old
        send_options(port, 30)
        m = scrape_until(60)
        for _ in range(6):
            m = scrape_until(60)
        assert m["ksr_sl_2xx_replies_total"] == 60
        assert m['ksr_sip_request_duration_seconds_count{method="OPTIONS"}'] == 60
        assert _stats(k["rpc"], "core:rcv_requests") == {"core:rcv_requests": 60}
