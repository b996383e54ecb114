"""core.max_message_size: a larger datagram is refused (513 when a reply can be built)."""

from __future__ import annotations

from pathlib import Path

from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

LUA = 'function ksr_request_route() KSR.sl.sl_send_reply(200, "OK") end\n'


async def test_message_over_the_limit_gets_513(tmp_path: Path) -> None:
    script = write_script(tmp_path, LUA)
    async with running_server(make_config(["sl"], max_message_size=1500), script) as server:
        peer = await UdpPeer().bind()
        small = sip_request(
            "MESSAGE", port=peer.port, body="x" * 100, extra="Content-Type: text/plain"
        )
        await peer.send(small, udp_addr(server))
        assert (await peer.recv_reply()).status == 200
        big = sip_request(
            "MESSAGE",
            port=peer.port,
            body="x" * 2000,
            branch="z9hG4bK-big",
            extra="Content-Type: text/plain",
        )
        await peer.send(big, udp_addr(server))
        rpl = await peer.recv_reply()
        assert rpl.status == 513
