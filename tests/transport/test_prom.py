"""GET /metrics (xhttp_prom): core statistics count real SIP messages; script-kept metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

from .clients import addr, connect, http_request

LUA = """
function ksr_request_route()
  KSR.xhttp_prom.counter_inc_l1("sip_requests", 1, KSR.pv.get("$rm"))
  KSR.xhttp_prom.gauge_set_l0("temperature", "21.5")
  KSR.xhttp_prom.histogram_observe_l0("size", tostring(KSR.pv.get("$ml")))
  KSR.sl.sl_send_reply(200, "OK")
end

function http_event(evname)
  if KSR.xhttp_prom.check_uri() > 0 then
    KSR.xhttp_prom.dispatch()
    return 1
  end
  KSR.xhttp.xhttp_reply(404, "Not Found", "", "")
end
"""

PY = """
import KSR

class Router:
    def ksr_request_route(self, msg):
        KSR.xhttp_prom.counter_inc_l1("sip_requests", 1, KSR.pv.get("$rm"))
        KSR.xhttp_prom.gauge_set_l0("temperature", "21.5")
        KSR.xhttp_prom.histogram_observe_l0("size", str(KSR.pv.get("$ml")))
        KSR.sl.sl_send_reply(200, "OK")
        return 1

    def http_event(self, msg, evname):
        if KSR.xhttp_prom.check_uri() > 0:
            KSR.xhttp_prom.dispatch()
            return 1
        KSR.xhttp.xhttp_reply(404, "Not Found", "", "")
        return 1

def mod_init():
    return Router()
"""


def _metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest.mark.parametrize(("suffix", "text"), [(".lua", LUA), (".py", PY)])
async def test_metrics_count_real_messages(tmp_path: Path, suffix: str, text: str) -> None:
    config = make_config(
        ["sl", "xhttp", "xhttp_prom"],
        {
            "xhttp": {"event_callback": "http_event"},
            "xhttp_prom": {
                "xhttp_prom_counter": "name=sip_requests; label=method;",
                "xhttp_prom_gauge": ["name=temperature;"],
                "xhttp_prom_histogram": ["name=size; buckets=100:1000"],
            },
        },
        listen=["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
    )
    script = write_script(tmp_path, text, suffix)
    async with running_server(config, script) as server:
        peer = await UdpPeer().bind()
        for i in range(3):
            await peer.send(sip_request(port=peer.port, call_id=f"m-{i}"), udp_addr(server))
            assert (await peer.recv_reply()).status == 200
        peer.close()
        stream = await connect(*addr(server, "tcp"))
        assert (await http_request(stream, "GET", "/other")).status == 404
        r = await http_request(stream, "GET", "/metrics")
        await stream.aclose()
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text_body = r.body.decode()
    assert "# TYPE ksr_core_rcv_requests_total counter" in text_body
    assert "# HELP ksr_core_rcv_requests_total SIP requests received" in text_body
    m = _metrics(text_body)
    assert m["ksr_core_rcv_requests_total"] == 3
    assert m["ksr_sl_2xx_replies_total"] == 3
    assert m['ksr_sip_requests_total{method="OPTIONS"}'] == 3
    assert m["ksr_temperature"] == 21.5
    assert m['ksr_size_bucket{le="1000"}'] == 3
    assert m['ksr_size_bucket{le="100"}'] == 0
    assert m["ksr_size_count"] == 3
    assert m["ksr_uptime_seconds"] >= 0
    # the latency histograms: 3 OPTIONS answered, each one request route run
    assert m['ksr_sip_request_duration_seconds_count{method="OPTIONS"}'] == 3
    assert m['ksr_route_duration_seconds_count{route="ksr_request_route"}'] == 3


async def test_kamailio_names(tmp_path: Path) -> None:
    """xhttp_prom_kamailio_names = 1: Kamailio's exact names (no _total), counters untyped."""
    config = make_config(
        ["sl", "xhttp", "xhttp_prom"],
        {
            "xhttp": {"event_callback": "http_event"},
            "xhttp_prom": {
                "xhttp_prom_beginning": "kamailio_",
                "xhttp_prom_kamailio_names": 1,
                "xhttp_prom_counter": "name=sip_requests; label=method;",
                "xhttp_prom_gauge": ["name=temperature;"],
                "xhttp_prom_histogram": ["name=size; buckets=100:1000"],
            },
        },
        listen=["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
    )
    script = write_script(tmp_path, LUA, ".lua")
    async with running_server(config, script) as server:
        peer = await UdpPeer().bind()
        await peer.send(sip_request(port=peer.port, call_id="k-1"), udp_addr(server))
        assert (await peer.recv_reply()).status == 200
        peer.close()
        stream = await connect(*addr(server, "tcp"))
        r = await http_request(stream, "GET", "/metrics")
        await stream.aclose()
    text = r.body.decode()
    assert "# TYPE kamailio_core_rcv_requests untyped" in text
    m = _metrics(text)
    assert m["kamailio_core_rcv_requests"] == 1
    assert m['kamailio_sip_requests{method="OPTIONS"}'] == 1
    assert "kamailio_core_rcv_requests_total" not in m
    assert m["kamailio_uptime"] >= 0
