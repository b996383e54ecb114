"""End to end through real UDP sockets: a Lua and a Python script answer OPTIONS."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

LUA = """
function ksr_request_route()
  if KSR.is_OPTIONS() then
    KSR.sl.sl_send_reply(200, "Keepalive")
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(404, "Not here")
end
"""

PY = """
import KSR

class Router:
    def ksr_request_route(self, msg):
        if KSR.is_OPTIONS():
            KSR.sl.sl_send_reply(200, "Keepalive")
            return 1
        KSR.sl.sl_send_reply(404, "Not here")
        return 1

def mod_init():
    return Router()
"""


@pytest.mark.parametrize(("suffix", "text"), [(".lua", LUA), (".py", PY)])
async def test_options_answered(tmp_path: Path, suffix: str, text: str) -> None:
    script = write_script(tmp_path, text, suffix)
    async with running_server(make_config(["sl"]), script) as server:
        peer = await UdpPeer().bind()
        await peer.send(sip_request("OPTIONS", port=peer.port), udp_addr(server))
        rpl = await peer.recv_reply()
        assert rpl.status == 200
        assert rpl.reason == "Keepalive"
        assert rpl.to_tag
        via = rpl.top_via
        assert via.params["rport"] == str(peer.port)
        assert via.params["received"] == "127.0.0.1"
        await peer.send(sip_request("INVITE", port=peer.port, branch="z9hG4bK-2"), udp_addr(server))
        rpl = await peer.recv_reply()
        assert (rpl.status, rpl.reason) == (404, "Not here")
