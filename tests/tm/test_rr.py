"""rr: loose_route return codes and $du, Record-Route on relayed requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.sip.message import Request, parse_message_untrusted
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

SCRIPT = """
function ksr_request_route()
  if KSR.pv.get("$rU") == "relay" then
    KSR.rr.record_route()
    KSR.rr.add_rr_param(";tst=1")
    KSR.setdsturi("sip:127.0.0.1:" .. KSR.pv.get("$hdr(X-Port)"))
    KSR.tm.t_relay()
    return 1
  end
  local rc = KSR.rr.loose_route()
  local du = KSR.pv.get("$du") or "null"
  local dir = KSR.rr.is_direction("downstream")
  KSR.sl.sl_send_reply(200, "rc " .. rc .. " du " .. du .. " ru " .. KSR.pv.get("$ru") .. " dir " .. dir)
end
"""


@pytest.mark.parametrize(
    ("route", "to_tag", "ruri", "expect"),
    [
        ("", "t", "sip:bob@127.0.0.1:9", "rc -1 du null"),
        (
            "<sip:{me};lr;ftag=fromtag-test-call-1>",
            "t",
            "sip:bob@127.0.0.1:9",
            "rc 1 du null ru sip:bob@127.0.0.1:9 dir 1",
        ),
        (
            "<sip:{me};lr;ftag=other>, <sip:10.0.0.9:5070;lr>",
            "t",
            "sip:bob@127.0.0.1:9",
            "rc 1 du sip:10.0.0.9:5070;lr ru sip:bob@127.0.0.1:9 dir -1",
        ),
        ("<sip:{me};lr;r2=on>, <sip:{me};lr;r2=on>", "t", "sip:bob@127.0.0.1:9", "rc 1 du null"),
        ("<sip:{me};lr>", None, "sip:bob@127.0.0.1:9", "rc -1 du null"),
        ("<sip:10.0.0.9:5070;lr>", None, "sip:bob@127.0.0.1:9", "rc -3 du sip:10.0.0.9:5070;lr"),
        ("<sip:10.0.0.9:5070>", "t", "sip:bob@127.0.0.1:9", "rc 1 du null ru sip:10.0.0.9:5070"),
        ("<sip:bob@127.0.0.1:9>", "t", "sip:{me};lr", "rc 1 du null ru sip:bob@127.0.0.1:9"),
    ],
)
async def test_loose_route(
    tmp_path: Path, route: str, to_tag: str | None, ruri: str, expect: str
) -> None:
    script = write_script(tmp_path, SCRIPT)
    async with running_server(make_config(["sl", "tm", "rr"]), script) as server:
        host, port = udp_addr(server)
        me = f"{host}:{port}"
        peer = await UdpPeer().bind()
        extra = f"Route: {route.format(me=me)}" if route else ""
        await peer.send(
            sip_request("BYE", ruri=ruri.format(me=me), port=peer.port, extra=extra, to_tag=to_tag),
            (host, port),
        )
        rpl = await peer.recv_reply()
        assert rpl.reason.startswith(expect), rpl.reason


async def test_record_route_added_when_sent(tmp_path: Path) -> None:
    script = write_script(tmp_path, SCRIPT)
    async with running_server(make_config(["sl", "tm", "rr"]), script) as server:
        host, port = udp_addr(server)
        callee, caller = await UdpPeer().bind(), await UdpPeer().bind()
        await caller.send(
            sip_request(
                "MESSAGE", ruri="sip:relay@x", port=caller.port, extra=f"X-Port: {callee.port}"
            ),
            (host, port),
        )
        fwd = parse_message_untrusted(await callee.recv())
        assert isinstance(fwd, Request)
        assert fwd.get_all("record-route") == [
            f"<sip:{host}:{port};lr;ftag=fromtag-test-call-1;tst=1>"
        ]
