"""The received request is never changed: received=/rport= go on what is sent on.

The script reads the top Via, $ml, $hdr(Via) and textops searches as the request arrived;
the forwarded copy (stateless and through tm) carries the sender's Via with received= and
rport=, and so do the replies ksr makes (stateless and stateful), which go to the source
address the parameters name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.sip.builders import make_reply
from ksr.sip.message import Request, Response, parse_message_untrusted
from ksr.sip.received import ViaFix, received_fix
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

LUA = """
function ksr_request_route()
  local seen = KSR.hdr.get("Via") .. "|" .. KSR.pv.get("$hdr(Via)") .. "|" .. KSR.pv.get("$ml")
    .. "|" .. KSR.textops.search("received=") .. "|" .. KSR.textops.search("rport=")
  KSR.hdr.append_to_reply("X-Seen: " .. seen .. "\\r\\n")
  KSR.hdr.append("X-Seen: " .. seen .. "\\r\\n")
  local how = KSR.hdr.get("X-How")
  if how == "sl" then KSR.sl.sl_send_reply(403, "Nope") return 1 end
  if how == "t_reply" then KSR.tm.t_newtran() KSR.tm.t_reply(486, "Busy") return 1 end
  local next = "sip:127.0.0.1:" .. KSR.hdr.get("X-Next")
  if how == "forward" then KSR.forward_uri(next) return 1 end
  KSR.setdsturi(next)
  KSR.tm.t_relay()
end
"""

VIA = "SIP/2.0/UDP 10.9.8.7:5099;branch=z9hG4bK-rcv{n};rport"


def request(n: int, how: str, next_port: int = 9) -> bytes:
    lines = [
        "INVITE sip:bob@127.0.0.1 SIP/2.0",
        f"Via: {VIA.format(n=n)}",
        "Max-Forwards: 70",
        "From: <sip:alice@127.0.0.1>;tag=1",
        "To: <sip:bob@127.0.0.1>",
        f"Call-ID: rcv-{n}",
        f"CSeq: {n} INVITE",
        "Contact: <sip:alice@10.9.8.7:5099>",
        f"X-How: {how}",
        f"X-Next: {next_port}",
    ]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def seen_ok(value: str | None, n: int, how: str, next_port: int = 9) -> None:
    assert value is not None
    via, hdr_via, ml, search_rcv, search_rport = value.split("|")
    assert via == hdr_via == VIA.format(n=n)
    assert int(ml) == len(request(n, how, next_port))
    assert (search_rcv, search_rport) == ("-1", "-1")


@pytest.mark.parametrize("how", ["sl", "t_reply"])
async def test_reply_carries_received_the_script_saw_none(tmp_path: Path, how: str) -> None:
    cfg = make_config(["sl", "tm", "textops"])
    async with running_server(cfg, write_script(tmp_path, LUA)) as server:
        ua = await UdpPeer().bind()
        try:
            await ua.send(request(1, how), udp_addr(server))
            # the Via names 10.9.8.7:5099, but rport sends the reply to where it came from
            rpl = await ua.recv_reply()
            while rpl.status == 100:
                rpl = await ua.recv_reply()
            assert rpl.status in (403, 486)
            assert rpl.get("via") == f"{VIA.format(n=1)}={ua.port};received=127.0.0.1"
            seen_ok(rpl.get("x-seen"), 1, how)
        finally:
            ua.close()


@pytest.mark.parametrize("how", ["forward", "t_relay"])
async def test_forwarded_copy_carries_received(tmp_path: Path, how: str) -> None:
    cfg = make_config(["sl", "tm", "textops"])
    async with running_server(cfg, write_script(tmp_path, LUA)) as server:
        ua, callee = await UdpPeer().bind(), await UdpPeer().bind()
        try:
            await ua.send(request(2, how, callee.port), udp_addr(server))
            fwd = parse_message_untrusted(await callee.recv())
            assert isinstance(fwd, Request)
            vias = fwd.get_values("via")
            assert len(vias) == 2
            assert vias[1] == f"{VIA.format(n=2)}={ua.port};received=127.0.0.1"
            seen_ok(fwd.get("x-seen"), 2, how, callee.port)
        finally:
            ua.close()
            callee.close()


def _fix_for(raw: bytes, src_port: int, force_rport: bool = False) -> tuple[Request, ViaFix | None]:
    req = parse_message_untrusted(raw)
    assert isinstance(req, Request)
    return req, received_fix(req, "192.0.2.1", src_port, force_rport)


def test_received_fix_leaves_the_request_alone() -> None:
    raw = (
        b"OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1 ;rport, "
        b"SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n"
        b"Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    req, fix = _fix_for(raw, 4000)
    req.via_fix = fix
    assert req.to_bytes() == raw
    assert req.top_via.params.get("received") is None
    rpl = make_reply(req, 200)
    assert isinstance(rpl, Response)
    assert rpl.get("via") == (
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1 ;rport=4000;received=192.0.2.1, "
        "SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2"
    )


def test_received_fix_cases() -> None:
    base = "OPTIONS sip:b@x SIP/2.0\r\nVia: {}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
    # same host, no rport asked: nothing to add
    _, fix = _fix_for(base.format("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1").encode(), 5060)
    assert fix is None
    # force_rport on a Via without rport
    _, fix = _fix_for(
        base.format("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1").encode(), 7000, force_rport=True
    )
    assert fix is not None
    assert fix.sent.value.endswith(";rport=7000;received=192.0.2.1")
    # a received= the sender wrote itself is replaced, not doubled
    _, fix = _fix_for(base.format("SIP/2.0/UDP h;branch=z9hG4bK1;received=1.1.1.1").encode(), 5060)
    assert fix is not None
    assert fix.sent.value.count("received=") == 1
    assert fix.via.params["received"] == "192.0.2.1"
