"""Python request routes run in a greenlet (and so may wait on I/O) only when a loaded KSR
function may wait with the configuration (docs/suspend.md); otherwise as plain calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

SCRIPT = """
import KSR
from ksr.suspend import can_suspend


class Routes:
    def ksr_request_route(self, msg):
        KSR.sl.sl_send_reply(200, "can wait %d" % can_suspend())
        return 1


def mod_init():
    return Routes()
"""


@pytest.mark.parametrize(
    ("modules", "modparam", "waits"),
    [
        (["sl"], {}, False),
        (["sl", "auth"], {}, False),  # its pv_* checks wait only on a cluster's Redis
        # usrloc in memory: registrar never waits; dialog asks other workers only with -n N
        (["sl", "tm", "usrloc", "registrar", "dialog"], {"usrloc": {"db_mode": 0}}, False),
        (["sl", "usrloc", "registrar"], {"usrloc": {"db_mode": 1}}, True),
    ],
)
async def test_a_route_waits_only_where_a_ksr_function_may(
    tmp_path: Path, modules: list[str], modparam: dict[str, Any], waits: bool
) -> None:
    if modparam.get("usrloc", {}).get("db_mode"):
        modparam["usrloc"]["db_url"] = f"sqlite://{tmp_path / 'location.sqlite'}"
    script = write_script(tmp_path, SCRIPT, ".py")
    config = make_config(modules, modparam)
    async with running_server(config, script) as server:
        assert server.engine is not None
        assert server.engine.routes_wait is waits  # type: ignore[attr-defined]
        peer = await UdpPeer().bind()
        try:
            await peer.send(sip_request(port=peer.port), udp_addr(server))
            reply = await peer.recv_reply()
        finally:
            peer.close()
    assert (reply.status, reply.reason) == (200, f"can wait {int(waits)}")
