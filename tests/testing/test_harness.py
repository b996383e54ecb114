"""ksr.testing: scripts run offline through the real pipeline; outcomes as a user asserts them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from ksr.testing import ScriptHarness, build_request
from tests.support import REPO

LUA = """
function ksr_request_route()
  local ru = KSR.pv.get("$rU")
  if ru == "stateless" then
    KSR.hdr.append("X-Routed: yes\\r\\n")
    KSR.hdr.remove("Subject")
    KSR.setflag(3)
    KSR.forward_uri("sip:10.0.0.9:5070")
    return 1
  end
  if ru == "bob" then
    if KSR.registrar.lookup("location") < 0 then
      KSR.sl.sl_send_reply(404, "Not Here")
      KSR.x.exit()
    end
    KSR.tm.t_relay()
    return 1
  end
  if ru == "boom" then
    local x = nil
    return x.field
  end
  KSR.sl.sl_send_reply(403, "Go Away " .. ru)
end
"""

PY = """
import KSR

class R:
    def ksr_request_route(self, msg):
        ru = KSR.pv.get("$rU")
        if ru == "stateless":
            KSR.hdr.append("X-Routed: yes\\r\\n")
            KSR.hdr.remove("Subject")
            KSR.setflag(3)
            KSR.forward_uri("sip:10.0.0.9:5070")
            return 1
        if ru == "bob":
            if KSR.registrar.lookup("location") < 0:
                KSR.sl.sl_send_reply(404, "Not Here")
                return 1
            KSR.tm.t_relay()
            return 1
        if ru == "boom":
            return None.field
        KSR.sl.sl_send_reply(403, "Go Away " + ru)

def mod_init():
    return R()
"""

MODULES = ["sl", "tm", "usrloc", "registrar"]


@pytest.fixture(params=["lua", "py"])
def script(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    p = tmp_path / f"route.{request.param}"
    p.write_text(LUA if request.param == "lua" else PY)
    return p


async def test_reply_code_and_reason(script: Path) -> None:
    h = ScriptHarness(script, modules=MODULES)
    out = h.request("OPTIONS", "sip:carol@127.0.0.1")
    assert (out.code, out.reason) == (403, "Go Away carol")
    assert out.relayed == []
    assert out.runs[0].name == "ksr_request_route"
    assert out.runs[0].rc == 1


async def test_stateless_forward_with_header_changes(script: Path) -> None:
    h = ScriptHarness(script, modules=MODULES)
    out = h.request(
        "MESSAGE",
        "sip:stateless@127.0.0.1",
        headers={"Subject": "hi"},
        body="text",
        content_type="text/plain",
    )
    assert out.reply is None
    assert out.destination == "udp:10.0.0.9:5070"
    assert out.ruri == "sip:stateless@127.0.0.1"
    assert out.added("X-Routed") == ["yes"]
    assert out.removed("Subject") == ["hi"]
    assert out.isflagset(3)
    assert out.forwarded is not None
    assert out.forwarded.body == b"text"
    assert out.forwarded.vias[0].host == "127.0.0.1"  # the Via ksr added on top


async def test_location_table_and_tm_relay(
    script: Path, autojump_clock: trio.testing.MockClock
) -> None:
    h = ScriptHarness(script, modules=MODULES, locations={"bob@127.0.0.1": "sip:bob@10.0.0.2:5062"})
    async with h.running():
        out = h.request(
            "INVITE", "sip:bob@127.0.0.1", body="v=0\r\n", content_type="application/sdp"
        )
        assert out.code == 100  # tm answers the INVITE with 100 Trying
        assert out.destination == "udp:10.0.0.2:5062"
        assert out.ruri == "sip:bob@10.0.0.2:5062"
        empty = ScriptHarness(script, modules=MODULES)  # an empty location table
        missing = empty.request("INVITE", "sip:bob@127.0.0.1")
        assert (missing.code, missing.reason) == (404, "Not Here")
        assert missing.relayed == []
        # time runs (autojump): tm retransmits the INVITE to bob until its timer gives up
        await trio.sleep(40)
        again = [s for s in h.sent if s.msg is not None and not s.is_reply]
        assert len(again) > 2


async def test_script_error_costs_500_and_is_logged(script: Path) -> None:
    h = ScriptHarness(script, modules=MODULES)
    out = h.request("OPTIONS", "sip:boom@127.0.0.1")
    assert out.code == 500
    assert out.failed_routes[0].name == "ksr_request_route"
    assert any(f"{script}:" in line for line in out.log_lines())


async def test_raw_bytes_and_malformed(script: Path) -> None:
    h = ScriptHarness(script, modules=MODULES)
    raw = build_request("OPTIONS", "sip:dave@127.0.0.1")
    assert h.receive(raw).reason == "Go Away dave"
    # a Content-Length beyond the datagram reaches the script (its sanity check judges it)
    short = raw.replace(b"Content-Length: 0", b"Content-Length: 99")
    assert h.receive(short).reason == "Go Away dave"
    bad = raw.replace(b"Content-Length: 0", b"Content-Length: 0\r\nContent-Length: 99")
    assert h.receive(bad).code == 400  # conflicting lengths: the core refuses it


async def test_reload_in_harness(script: Path) -> None:
    h = ScriptHarness(script, modules=MODULES)
    script.write_text(script.read_text().replace("Go Away", "Still Away"))
    assert h.reload()["new"] == 2
    assert h.request("OPTIONS", "sip:eve@127.0.0.1").reason == "Still Away eve"


def test_pytest_plugin_fixture(tmp_path: Path) -> None:
    """The ksr_script fixture is there in a fresh pytest run (pytest11 entry point)."""
    test = tmp_path / "test_user_script.py"
    test.write_text(
        "import pytest\n\n"
        f"@pytest.mark.ksr_script({str(REPO / 'scripts' / 'default.lua')!r})\n"
        "def test_it(ksr_script):\n"
        "    h = ksr_script(modules=['sl'])\n"
        "    assert h.server.engine.language == 'lua'\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
