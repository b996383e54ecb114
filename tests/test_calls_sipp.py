"""Real calls through ksr: sipp caller -> ksr (tm, rr) -> sipp callee, all on 127.0.0.1.

The routing script sends by R-URI user to the sipp callee listening for that case: ``bob``
answers, ``busy`` answers 486 (the failure route re-routes to bob), ``slow`` rings for ever
(fr_inv_timer is cut to 1 s with t_set_fr: the caller gets 408), ``cancel`` rings until the
caller CANCELs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, ksr_process, sipp_command

SIPP = Path(__file__).parent / "sipp"
MODULES = 'loadmodule = ["sl", "tm", "tmx", "rr"]\n'

LUA = """
local UAS = {bob=%(bob)d, busy=%(busy)d, slow=%(slow)d, cancel=%(cancel)d}

local function target(port)
  local proto = KSR.pv.get("$pr")
  if proto == "udp" then return "sip:127.0.0.1:" .. port end
  return "sip:127.0.0.1:" .. port .. ";transport=" .. proto
end

local function relay()
  if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
end

function ksr_request_route()
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then relay() end
    return 1
  end
  if not KSR.is_ACK() then
    if KSR.tmx.t_precheck_trans() > 0 then KSR.tm.t_check_trans(); return 1 end
    if KSR.tm.t_check_trans() == 0 then return 1 end
  end
  if KSR.pv.get("$tt") ~= nil then
    if KSR.rr.loose_route() > 0 then relay(); return 1 end
    if KSR.is_ACK() then
      if KSR.tm.t_check_trans() > 0 then relay() end
      return 1
    end
    KSR.sl.sl_send_reply(404, "Not here")
    return 1
  end
  KSR.hdr.remove("Route")
  if KSR.is_method_in("IS") then KSR.rr.record_route() end
  local user = KSR.pv.get("$rU")
  local port = UAS[user]
  if port == nil or port == 0 then KSR.sl.sl_send_reply(404, "Not Found"); return 1 end
  if user == "slow" then KSR.tm.t_set_fr(1000, 2000) end
  KSR.setdsturi(target(port))
  KSR.tm.t_on_failure("ksr_failure_manage")
  relay()
end

function ksr_failure_manage()
  if KSR.tm.t_is_canceled() > 0 then return 1 end
  if KSR.pv.get("$T_reply_code") == 486 then
    KSR.setdsturi(target(UAS.bob))
    KSR.tm.t_relay()
  end
end
"""

PY = """
import KSR

UAS = {"bob": %(bob)d, "busy": %(busy)d, "slow": %(slow)d, "cancel": %(cancel)d}


def target(port):
    proto = KSR.pv.get("$pr")
    if proto == "udp":
        return "sip:127.0.0.1:%%d" %% port
    return "sip:127.0.0.1:%%d;transport=%%s" %% (port, proto)


class Router:
    def relay(self):
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()

    def ksr_request_route(self, msg):
        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                self.relay()
            return 1
        if not KSR.is_ACK():
            if KSR.tmx.t_precheck_trans() > 0:
                KSR.tm.t_check_trans()
                return 1
            if KSR.tm.t_check_trans() == 0:
                return 1
        if KSR.pv.get("$tt") is not None:
            if KSR.rr.loose_route() > 0:
                self.relay()
                return 1
            if KSR.is_ACK():
                if KSR.tm.t_check_trans() > 0:
                    self.relay()
                return 1
            KSR.sl.sl_send_reply(404, "Not here")
            return 1
        KSR.hdr.remove("Route")
        if KSR.is_method_in("IS"):
            KSR.rr.record_route()
        user = KSR.pv.get("$rU")
        port = UAS.get(user)
        if not port:
            KSR.sl.sl_send_reply(404, "Not Found")
            return 1
        if user == "slow":
            KSR.tm.t_set_fr(1000, 2000)
        KSR.setdsturi(target(port))
        KSR.tm.t_on_failure("ksr_failure_manage")
        self.relay()
        return 1

    def ksr_failure_manage(self, msg):
        if KSR.tm.t_is_canceled() > 0:
            return 1
        if KSR.pv.get("$T_reply_code") == 486:
            KSR.setdsturi(target(UAS["bob"]))
            KSR.tm.t_relay()
        return 1


def mod_init():
    return Router()
"""


def _sipp_args(transport: str) -> list[str]:
    return ["-t", "t1"] if transport == "tcp" else []


class Callee:
    """A sipp callee in the background."""

    def __init__(self, scenario: str, transport: str, calls: int) -> None:
        self.port = free_port()
        args = sipp_command(SIPP / scenario, *_sipp_args(transport), port=self.port, calls=calls)
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def wait(self) -> int:
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -1

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def caller(
    scenario: str, ksr_port: int, user: str, transport: str, calls: int = 2
) -> subprocess.CompletedProcess[str]:
    args = sipp_command(
        SIPP / scenario,
        f"127.0.0.1:{ksr_port}",
        *("-s", user, "-r", "10", "-max_recv_loops", "100", *_sipp_args(transport)),
        calls=calls,
    )
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.fixture
def callees() -> Iterator[list[Callee]]:
    started: list[Callee] = []
    yield started
    for c in started:
        c.kill()


CASES = [
    # (caller scenario, user, callee scenarios)
    ("uac_call.xml", "bob", ["uas_call.xml"]),
    ("uac_reinvite.xml", "bob", ["uas_call.xml"]),
    ("uac_cancel.xml", "cancel", ["uas_noanswer.xml"]),
    ("uac_call.xml", "busy", ["uas_486.xml", "uas_call.xml"]),
    ("uac_408.xml", "slow", ["uas_noanswer.xml"]),
]


RUNS = [(lang, tr, *case) for lang, tr in (("lua", "udp"), ("py", "tcp")) for case in CASES]
RUNS += [("lua", "tcp", *CASES[1]), ("py", "udp", *CASES[1])]


@pytest.mark.parametrize(
    ("lang", "transport", "uac", "user", "uas"),
    RUNS,
    ids=[f"{r[0]}-{r[1]}-{r[3]}-{r[2][4:-4]}" for r in RUNS],
)
def test_call_through_ksr(
    tmp_path: Path,
    callees: list[Callee],
    lang: str,
    transport: str,
    uac: str,
    user: str,
    uas: list[str],
) -> None:
    calls = 2
    for scen in uas:
        callees.append(Callee(scen, transport, calls))
    ports = {"bob": 0, "busy": 0, "slow": 0, "cancel": 0}
    if user == "busy":
        ports["busy"], ports["bob"] = callees[0].port, callees[1].port
    else:
        ports[user] = callees[0].port
    script = tmp_path / f"route.{lang}"
    script.write_text((LUA if lang == "lua" else PY) % ports)
    with ksr_process(script, MODULES) as ksr:
        res = caller(uac, ksr["port"], user, transport, calls)
        assert res.returncode == 0, (
            res.stdout[-3000:] + res.stderr[-2000:] + ksr["log"].read_text()[-3000:]
        )
        for c in callees:
            assert c.wait() == 0, c.proc.stderr.read() if c.proc.stderr else ""
        log = ksr["log"].read_text()
        assert "Traceback" not in log, log
