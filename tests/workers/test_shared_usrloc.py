"""`ksr run -n 2` with usrloc db_mode 0 (memory only): every worker finds every registration,
whichever worker saved it (docs/workers.md, shared tables). Real sipp: 16 users register from
two source ports, one the kernel gives to each worker (a REGISTER stays where it arrives), so
both workers save bindings; then three callers on
their own source ports call every user; every call must reach the callee. Then a worker is
killed with SIGKILL: the supervisor restarts it, it copies the table from its sibling and
routes calls to every user again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import free_port, ksr_process, wait_steered, write_script

SIPP = Path(__file__).resolve().parent / "sipp"
UAS = Path(__file__).resolve().parents[2] / "bench" / "sipp" / "call_uas.xml"
pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "sipp"], capture_output=True).returncode != 0,
    reason="sipp not installed",
)

SCRIPT = """
function ksr_request_route()
  local pid = KSR.pv.get("$pp")
  if KSR.is_REGISTER() and KSR.pv.get("$tU") == "whoami" then
    KSR.sl.sl_send_reply(200, "pid=" .. pid)
    return 1
  end
  if KSR.is_REGISTER() then
    if KSR.registrar.save("location", 0) > 0 then KSR.info("SAVED pid=" .. pid .. "\\n") end
    return 1
  end
  if KSR.siputils.has_totag() > 0 then
    if KSR.rr.loose_route() > 0 then KSR.tm.t_relay() return 1 end
    if KSR.is_ACK() and KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if KSR.is_INVITE() then KSR.rr.record_route() end
  if KSR.registrar.lookup("location") < 0 then
    KSR.info("NOTFOUND pid=" .. pid .. " " .. KSR.pv.get("$rU") .. "\\n")
    KSR.sl.sl_send_reply(404, "Not Found")
    return 1
  end
  KSR.info("FOUND pid=" .. pid .. "\\n")
  KSR.tm.t_relay()
end
"""
CONFIG = 'loadmodule = ["sl", "tm", "rr", "siputils", "usrloc", "registrar", "jsonrpcs"]\n'
USERS = 16


def sipp(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["sipp", *args, "-i", "127.0.0.1", "-nostdin", "-timeout", "60s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(p: subprocess.Popen[str], log: Path) -> None:
    out = p.communicate(timeout=90)[0]
    assert p.returncode == 0, out[-2500:] + log.read_text()[-3000:]


def pids(log: Path, word: str) -> set[str]:
    return set(re.findall(word + r" pid=(\d+)", log.read_text()))


def call_everyone(k: dict[str, object], users: Path, uas_port: int, callers: int) -> None:
    log = k["log"]
    assert isinstance(log, Path)
    uas = sipp(["-sf", str(UAS), "-p", str(uas_port), "-m", str(USERS * callers)])
    procs = [
        sipp(
            [
                "-sf",
                str(SIPP / "call_user.xml"),
                "-inf",
                str(users),
                f"127.0.0.1:{k['port']}",
                "-p",
                str(free_port()),  # another source port: the kernel spreads them over workers
                "-m",
                str(USERS),
                "-r",
                "20",
            ]
        )
        for _ in range(callers)
    ]
    for p in procs:
        finish(p, log)
    finish(uas, log)


def test_calls_reach_users_whichever_worker_saved_them(tmp_path: Path) -> None:
    uas_port = free_port()
    users = tmp_path / "users.csv"
    users.write_text("SEQUENTIAL\n" + "".join(f"user{i:02d};{uas_port}\n" for i in range(USERS)))
    with ksr_process(write_script(tmp_path, SCRIPT), CONFIG, extra_args=["-n", "2"]) as k:
        log = k["log"]
        # the kernel gives each REGISTER to a worker by its Call-ID: both save some
        wait_steered(log, 2)
        ports = [free_port(), free_port()]
        halves = [tmp_path / "half0.csv", tmp_path / "half1.csv"]
        rows = users.read_text().splitlines()[1:]
        for n, half in enumerate(halves):
            half.write_text("SEQUENTIAL\n" + "".join(r + "\n" for r in rows[n::2]))
        regs = [
            sipp(
                [
                    "-sf",
                    str(SIPP / "register_contact.xml"),
                    "-inf",
                    str(half),
                    f"127.0.0.1:{k['port']}",
                    "-p",
                    str(p),
                    "-m",
                    str(USERS // 2),
                ]
            )
            for half, p in zip(halves, ports, strict=True)
        ]
        for reg in regs:
            finish(reg, log)
        assert len(pids(log, "SAVED")) == 2  # both workers saved registrations
        call_everyone(k, users, uas_port, callers=3)
        assert len(pids(log, "FOUND")) == 2  # both workers looked users up
        assert "NOTFOUND" not in log.read_text()

        # a worker dies: the supervisor restarts it and it copies the table from worker 0
        worker_pids = re.findall(r"worker (\d) started \(pid (\d+)\)", log.read_text())
        victim = dict(worker_pids)["1"]
        os.kill(int(victim), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while log.read_text().count("listening on") < 3:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        assert "state copied from worker 0" in log.read_text()
        before = log.read_text().count("FOUND pid=")
        call_everyone(k, users, uas_port, callers=2)
        assert "NOTFOUND" not in log.read_text()
        found = re.findall(r"FOUND pid=(\d+)", log.read_text())
        assert len(found) - before >= USERS * 2
        restarted = dict(re.findall(r"worker (\d) started \(pid (\d+)\)", log.read_text()))["1"]
        assert restarted != victim
        assert restarted in found
