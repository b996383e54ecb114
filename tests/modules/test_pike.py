"""KSR.pike: per-IP request counting on the server timer (mock clock), pike.top RPC."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from tests.kemi.scriptkit import LANGS, run_exprs, server_with
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

SCRIPT = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "rc " .. KSR.pike.pike_check_req())
end
"""


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    # jumps only once the real sockets have been idle for a moment
    return trio.testing.MockClock(autojump_threshold=0.1)


async def test_flood_blocked_then_released(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = make_config(
        ["sl", "pike"],
        {"pike": {"sampling_time_unit": 2, "reqs_density_per_unit": 3, "remove_latency": 10}},
    )
    async with running_server(cfg, write_script(tmp_path, SCRIPT)) as server:
        peer = await UdpPeer().bind()
        n = 0

        async def ask() -> str:
            nonlocal n
            n += 1
            await peer.send(sip_request(port=peer.port, branch=f"z9hG4bK-p{n}"), udp_addr(server))
            return (await peer.recv_reply()).reason

        assert [await ask() for _ in range(5)] == ["rc 1", "rc 1", "rc 1", "rc -2", "rc -1"]
        top = server.rpc.call("pike.top", [])
        assert [(t["ip_addr"], t["status"]) for t in top] == [("127.0.0.1", "HOT")]
        await trio.sleep(7)  # quiet, but less than remove_latency
        assert await ask() == "rc -1"  # still blocked; this request restarts the latency
        await trio.sleep(7)
        assert await ask() == "rc -1"
        await trio.sleep(11)
        assert server.rpc.call("pike.top", ["ALL"]) == []
        assert await ask() == "rc 1"
        # a new sampling unit starts the count again
        await trio.sleep(2.5)
        assert [await ask() for _ in range(3)] == ["rc 1"] * 3
        peer.close()


@pytest.mark.parametrize("lang", LANGS)
def test_pike_check_ip(lang: str, tmp_path: Path) -> None:
    s = server_with(["pike"], {"pike": {"reqs_density_per_unit": 1}})
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pike.pike_check_ip('192.0.2.1')",
            "KSR.pike.pike_check_ip('192.0.2.1')",
            "KSR.pike.pike_check_ip('192.0.2.1')",
            "KSR.pike.pike_check_ip('2001:db8::1')",
            "KSR.pike.pike_check_ip('2001:DB8:0::1')",
            "KSR.pike.pike_check_ip('not-an-ip')",
        ],
        tmp_path,
    )
    assert got == [1, -2, -1, 1, -2, 1]
    assert [t["ip_addr"] for t in s.rpc.call("pike.top", ["HOT"])] == ["192.0.2.1", "2001:db8::1"]


def test_sampling_units() -> None:
    """The limit is per unit: a steady rate at the limit passes; one more in a unit does not."""
    s = server_with(["pike"], {"pike": {"reqs_density_per_unit": 4}})
    pike = s.modules["pike"]
    for _ in range(3):
        assert [pike.check("192.0.2.9") for _ in range(4)] == [1] * 4
        pike.tick()
    assert [pike.check("192.0.2.9") for _ in range(5)] == [1, 1, 1, 1, -2]
    assert [t["leaf_hits_curr"] for t in s.rpc.call("pike.top", ["HOT"])] == [5]
    assert s.rpc.call("pike.top", ["WARM"]) == []
    with pytest.raises(Exception, match="Invalid filter"):
        s.rpc.call("pike.top", ["COLD"])
