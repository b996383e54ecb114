"""Lua request routes run as coroutines (and so may wait on I/O) only when a loaded KSR
function may wait with the configuration (docs/suspend.md); otherwise as plain runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

SCRIPT = """
function ksr_request_route()
  local co, main = coroutine.running()  -- Lua 5.1: nil on the main thread
  local inside = (co ~= nil and not main) and 1 or 0
  KSR.sl.sl_send_reply(200, "in coroutine " .. inside)
  return 1
end
"""


@pytest.mark.parametrize(
    ("modules", "modparam", "waits"),
    [
        (["sl"], {}, False),
        (["sl", "tm", "usrloc", "registrar", "dialog"], {"usrloc": {"db_mode": 0}}, False),
        (["sl", "usrloc", "registrar"], {"usrloc": {"db_mode": 1}}, True),
    ],
)
async def test_a_route_is_a_coroutine_only_where_a_ksr_function_may_wait(
    tmp_path: Path, modules: list[str], modparam: dict[str, Any], waits: bool
) -> None:
    if modparam.get("usrloc", {}).get("db_mode"):
        modparam["usrloc"]["db_url"] = f"sqlite://{tmp_path / 'location.sqlite'}"
    script = write_script(tmp_path, SCRIPT, ".lua")
    async with running_server(make_config(modules, modparam), script) as server:
        assert server.engine is not None
        assert server.engine.routes_wait is waits  # type: ignore[attr-defined]
        peer = await UdpPeer().bind()
        try:
            await peer.send(sip_request(port=peer.port), udp_addr(server))
            reply = await peer.recv_reply()
        finally:
            peer.close()
    assert (reply.status, reply.reason) == (200, f"in coroutine {int(waits)}")
