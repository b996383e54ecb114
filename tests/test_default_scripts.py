"""scripts/default.lua and scripts/default.py, unit-tested offline with ksr.testing.

Both scripts hold the same logic, so every case runs on both and must give the same result.
Only behaviour that is settled is tested here; add cases as the scripts grow.
"""

from __future__ import annotations

import pytest
import trio

from ksr.core.modules import available_modules
from ksr.testing import ScriptHarness
from tests.support import SCRIPTS

# The modules the default scripts call (those present in this checkout).
WANTED = [
    "sl",
    "maxfwd",
    "sanity",
    "tm",
    "tmx",
    "rr",
    "usrloc",
    "registrar",
    "nathelper",
    "siputils",
    "corex",
    "kemix",
    "dialog",
    "textops",
    "xlog",
    "pv",
    "htable",
    "pike",
    "permissions",
]


@pytest.fixture(params=["default.lua", "default.py"])
async def h(request: pytest.FixtureRequest, autojump_clock: trio.testing.MockClock):  # type: ignore[no-untyped-def]
    have = set(available_modules([]))
    harness = ScriptHarness(SCRIPTS / request.param, modules=[m for m in WANTED if m in have])
    async with harness.running():
        yield harness


async def test_options_keepalive(h: ScriptHarness) -> None:
    out = h.request("OPTIONS", "sip:127.0.0.1:5060")
    assert out.code == 200
    assert out.relayed == []


async def test_malformed_request_is_answered_400(h: ScriptHarness) -> None:
    raw = (
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKbad\r\n"
        b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: bad-1\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 9\r\n\r\n"
    )
    out = h.receive(raw)
    assert out.code == 400
    assert out.relayed == []


async def test_max_forwards_zero_is_483(h: ScriptHarness) -> None:
    out = h.request("OPTIONS", "sip:127.0.0.1:5060", max_forwards=0)
    assert (out.code, out.reason) == (483, "Too Many Hops")


# -- flood protection ----------------------------------------------------------------------------
OUTSIDE = ("192.0.2.7", 5080)  # a source that is not one of the server's addresses


async def test_scanner_user_agents_are_dropped(h: ScriptHarness) -> None:
    for ua in ("friendly-scanner", "sipcli/v1.8", "sipvicious"):
        out = h.request("OPTIONS", "sip:127.0.0.1:5060", headers={"User-Agent": ua})
        assert out.sent == [], ua
    out = h.request("OPTIONS", "sip:127.0.0.1:5060", headers={"User-Agent": "Linphone/5"})
    assert out.code == 200


async def test_pike_bans_a_flooding_source_for_a_while(
    h: ScriptHarness, autojump_clock: trio.testing.MockClock
) -> None:
    density = h.server.module("pike").params.reqs_density_per_unit
    codes = [h.request("OPTIONS", "sip:127.0.0.1:5060", src=OUTSIDE).code for _ in range(density)]
    assert codes == [200] * density
    out = h.request("OPTIONS", "sip:127.0.0.1:5060", src=OUTSIDE)
    assert out.sent == []
    assert any("pike blocking" in line for line in out.log_lines())
    assert h.server.module("htable").tables["ipban"].has(OUTSIDE[0])
    # banned: dropped silently, while other sources and the server's own addresses go on
    assert h.request("OPTIONS", "sip:127.0.0.1:5060", src=OUTSIDE).sent == []
    assert h.request("OPTIONS", "sip:127.0.0.1:5060", src=("192.0.2.8", 5080)).code == 200
    assert h.request("OPTIONS", "sip:127.0.0.1:5060").code == 200
    await trio.sleep(301)  # ipban's autoexpire (and pike's remove_latency) pass
    assert h.request("OPTIONS", "sip:127.0.0.1:5060", src=OUTSIDE).code == 200


async def test_the_servers_own_address_is_never_banned(h: ScriptHarness) -> None:
    density = h.server.module("pike").params.reqs_density_per_unit
    codes = {h.request("OPTIONS", "sip:127.0.0.1:5060").code for _ in range(density + 5)}
    assert codes == {200}
