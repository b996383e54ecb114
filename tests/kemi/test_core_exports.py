"""Core KSR.*, KSR.hdr and KSR.pv behaviour observed on Kamailio, in both engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.core.context import MsgContext
from ksr.sip.message import parse_message_untrusted
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


REPLY = (
    "SIP/2.0 200 OK\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1\n"
    "From: <sip:a@example.com>;tag=1\n"
    "To: <sip:b@example.com>;tag=2\n"
    "Call-ID: methods-1\n"
    "CSeq: 2 BYE\n"
    "Content-Length: 0\n\n"
)


@pytest.mark.parametrize("lang", LANGS)
def test_method_tests(lang: str, tmp_path: Path) -> None:
    """KSR.is_<METHOD>: a request's method, a reply's CSeq method (the Lua engine answers a
    request's tests itself, a reply's through Python); a boolean in both languages."""
    s = server_with([])
    exprs = ["KSR.is_INVITE()", "KSR.is_ACK()", "KSR.is_BYE()", "KSR.is_KDMQ()"]
    assert run_exprs(s, lang, exprs, tmp_path, context(s, MSG)) == [True, False, False, False]
    raw = REPLY.replace("\n", "\r\n").encode()
    reply = MsgContext(s, parse_message_untrusted(raw), "127.0.0.1", 5090, s.listeners[0])
    assert run_exprs(s, lang, exprs, tmp_path, reply) == [False, False, True, False]
    bye = sip_request("BYE", ruri="sip:bob@example.com")
    assert run_exprs(s, lang, exprs, tmp_path, context(s, bye)) == [False, False, True, False]


def test_method_tests_take_no_parameters_in_lua(tmp_path: Path) -> None:
    s = server_with([])
    got = run_exprs(s, "lua", ["KSR.is_INVITE(1)", "KSR.is_INVITE()"], tmp_path, context(s, MSG))
    assert got == [False, True]
