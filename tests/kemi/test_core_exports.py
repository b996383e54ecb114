"""Core KSR.*, KSR.hdr and KSR.pv behaviour observed on Kamailio, in both engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

MSG = sip_request("INVITE", ruri="sip:bob@example.com", extra="X-Old: old\nX-Old: older")


@pytest.mark.parametrize("lang", LANGS)
def test_hdr_changes_are_lumps(lang: str, tmp_path: Path) -> None:
    s = server_with([])
    ctx = context(s, MSG)
    got = run_exprs(
        s,
        lang,
        [
            "KSR.hdr.append('X-New: 1\\r\\n')",
            "KSR.hdr.is_present('X-New')",
            "KSR.hdr.rmappend('X-Old', 'X-Old: replaced\\r\\n')",
            "KSR.hdr.gete('X-Old')",
            "KSR.hdr.get_idx('X-Old', -1)",
            "KSR.hdr.insert('X-First: yes\\r\\n')",
            "KSR.hdr.remove('X-Missing')",
            "KSR.hdr.get('X-Missing')",
            "KSR.hdr.getw('X-Missing')",
            "KSR.hdr.match_content('X-Old', 'sw', 'OLD', 'a')",
        ],
        tmp_path,
        ctx,
    )
    assert got == [1, -1, 1, "old", "older", 1, 1, None, "<null>", True]
    out = ctx.apply_lumps()
    names = [h.name for h in out.headers]
    assert names[0] == "X-First"
    assert names[-1] == "X-Old"
    assert out.get_all("x-old") == ["replaced"]
    assert out.get("x-new") == "1"


@pytest.mark.parametrize("lang", LANGS)
def test_flags_uri_and_methods(lang: str, tmp_path: Path) -> None:
    s = server_with([])
    ctx = context(s, MSG)
    got = run_exprs(
        s,
        lang,
        [
            "KSR.setflag(31)",
            "KSR.setflag(32)",
            "KSR.isflagset(31)",
            "KSR.resetflag(31)",
            "KSR.isflagset(31)",
            "KSR.setsflag(2)",
            "KSR.issflagset(2)",
            "KSR.setbflag(1)",
            "KSR.isbflagset(1)",
            "KSR.is_method('BYE|INVITE')",
            "KSR.is_method_in('RI')",
            "KSR.is_method_in('R')",
            "KSR.is_UDP()",
            "KSR.is_TCP()",
            "KSR.seturi('sip:x@10.0.0.1')",
            "KSR.pv.get('$ru')",
            "KSR.seturi('not a uri')",
            "KSR.setuser('y')",
            "KSR.pv.get('$ru')",
            "KSR.isdsturiset()",
            "KSR.setdsturi('sip:10.0.0.2')",
            "KSR.isdsturiset()",
            "KSR.is_myself('sip:nobody@example.com')",
        ],
        tmp_path,
        ctx,
    )
    assert got == [
        True,
        False,
        True,
        True,
        False,
        True,
        True,
        True,
        True,
        True,
        True,
        False,
        True,
        False,
        True,
        "sip:x@10.0.0.1",
        False,
        True,
        "sip:y@10.0.0.1",
        False,
        True,
        True,
        False,
    ]


LUA_FWD = """
function ksr_request_route()
  KSR.hdr.append("X-Via-Ksr: yes\\r\\n")
  KSR.setdsturi("sip:127.0.0.1:" .. KSR.pv.get("$hdr(X-Target-Port)"))
  KSR.forward()
end
"""


async def test_stateless_forward_carries_lumps(tmp_path: Path) -> None:
    async with running_server(make_config(["sl"]), write_script(tmp_path, LUA_FWD)) as server:
        uac, uas = await UdpPeer().bind(), await UdpPeer().bind()
        req = sip_request("MESSAGE", port=uac.port, extra=f"X-Target-Port: {uas.port}")
        await uac.send(req, udp_addr(server))
        data = await uas.recv()
        assert b"X-Via-Ksr: yes\r\n" in data
        assert data.count(b"Via: SIP/2.0/UDP") == 2
        uac.close()
        uas.close()
