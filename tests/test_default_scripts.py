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
