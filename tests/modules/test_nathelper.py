"""nathelper through real scripts and sockets: detection, Contact rewriting, alias routing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.sip.headers import parse_name_addr
from ksr.sip.message import Request, parse_message_untrusted
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

LUA = """
function ksr_request_route()
  local nat = KSR.nathelper.nat_uac_test(19)
  local priv = KSR.nathelper.is_rfc1918(KSR.pv.get("$hdr(X-Ip)") or "")
  if KSR.is_REGISTER() then
    KSR.nathelper.fix_nated_register()
    KSR.hdr.append_to_reply("X-Rcv: " .. (KSR.pv.get("$avp(RECEIVED)") or "none") .. "\\r\\n")
    KSR.sl.sl_send_reply(200, "nat=" .. nat .. " priv=" .. priv)
    return
  end
  if KSR.is_MESSAGE() then
    KSR.nathelper.handle_ruri_alias()
    KSR.sl.sl_send_reply(200, KSR.pv.getw("$du") .. " " .. KSR.pv.get("$ru"))
    return
  end
  KSR.nathelper.set_contact_alias()
  KSR.nathelper.fix_nated_sdp(10)
  KSR.forward_uri(KSR.pv.get("$hdr(X-Next)"))
end
"""

PY = """
import KSR

class R:
    def ksr_request_route(self, msg):
        nat = KSR.nathelper.nat_uac_test(19)
        ip = KSR.pv.get("$hdr(X-Ip)") or ""
        priv = KSR.nathelper.is_rfc1918(ip)
        if KSR.is_REGISTER():
            KSR.nathelper.fix_nated_register()
            KSR.hdr.append_to_reply("X-Rcv: %s\\r\\n" % (KSR.pv.get("$avp(RECEIVED)") or "none"))
            KSR.sl.sl_send_reply(200, "nat=%d priv=%d" % (nat, priv))
            return 1
        if KSR.is_MESSAGE():
            KSR.nathelper.handle_ruri_alias()
            KSR.sl.sl_send_reply(200, "%s %s" % (KSR.pv.getw("$du"), KSR.pv.get("$ru")))
            return 1
        KSR.nathelper.set_contact_alias()
        KSR.nathelper.fix_nated_sdp(10)
        KSR.forward_uri(KSR.pv.get("$hdr(X-Next)"))
        return 1

def mod_init():
    return R()
"""

SDP = "v=0\r\no=- 1 1 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


@pytest.fixture(params=[(".lua", LUA), (".py", PY)], ids=["lua", "python"])
def script(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return write_script(tmp_path, request.param[1], request.param[0])


CFG = {"nathelper": {"received_avp": "$avp(RECEIVED)"}}


async def test_detects_private_contact_and_stores_received(script: Path) -> None:
    async with running_server(make_config(["sl", "nathelper"], CFG), script) as server:
        peer = await UdpPeer().bind()
        req = sip_request("REGISTER", "sip:127.0.0.1", port=peer.port, extra="X-Ip: 10.1.2.3")
        req = req.replace(f"<sip:alice@127.0.0.1:{peer.port}>", "<sip:alice@192.168.1.10:5060>")
        await peer.send(req, udp_addr(server))
        rpl = await peer.recv_reply()
        assert rpl.reason == "nat=1 priv=1"
        assert rpl.get("X-Rcv") == f"sip:127.0.0.1:{peer.port}"


async def test_public_contact_from_its_own_address_is_not_nated(script: Path) -> None:
    async with running_server(make_config(["sl", "nathelper"], CFG), script) as server:
        peer = await UdpPeer().bind()
        req = sip_request("REGISTER", "sip:127.0.0.1", port=peer.port, extra="X-Ip: 8.8.8.8")
        await peer.send(req, udp_addr(server))
        rpl = await peer.recv_reply()
        assert rpl.reason == "nat=-1 priv=-1"


async def test_alias_added_on_forward_and_sdp_fixed(script: Path) -> None:
    async with running_server(make_config(["sl", "nathelper"], CFG), script) as server:
        caller = await UdpPeer().bind()
        callee = await UdpPeer().bind()
        req = sip_request(
            "INVITE",
            "sip:bob@127.0.0.1",
            port=caller.port,
            extra=f"X-Next: sip:127.0.0.1:{callee.port}\nContent-Type: application/sdp",
            body=SDP,
        )
        req = req.replace(f"<sip:alice@127.0.0.1:{caller.port}>", "<sip:alice@192.168.1.10:5060>")
        await caller.send(req, udp_addr(server))
        fwd = parse_message_untrusted(await callee.recv())
        assert isinstance(fwd, Request)
        contact = parse_name_addr(fwd.get("contact") or "")
        assert contact.uri.host == "192.168.1.10"
        assert contact.uri.params["alias"] == f"127.0.0.1~{caller.port}~1"
        assert b"c=IN IP4 127.0.0.1" in fwd.body
        assert b"o=- 1 1 IN IP4 127.0.0.1" in fwd.body
        assert fwd.get("content-length") == str(len(fwd.body))


async def test_handle_ruri_alias_sets_destination(script: Path) -> None:
    async with running_server(make_config(["sl", "nathelper"], CFG), script) as server:
        peer = await UdpPeer().bind()
        req = sip_request(
            "MESSAGE", "sip:alice@192.168.1.10:5060;alias=127.0.0.1~5099~2", port=peer.port
        )
        await peer.send(req, udp_addr(server))
        rpl = await peer.recv_reply()
        assert rpl.reason == "sip:127.0.0.1:5099;transport=tcp sip:alice@192.168.1.10:5060"
