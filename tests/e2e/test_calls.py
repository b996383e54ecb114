"""Registrar and calls through the default scripts, with real sipp on both sides.

A sipp callee registers (REGISTER scenario) from the port it then answers on; a sipp caller
calls that user through ksr. For each way a call ends, both sipp sides succeed, the dialog
event callback ran, and the acc jsonl file holds exactly one CDR with the right end reason.
One ksr process per script language serves every case (UDP and TCP listeners)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, ksr_process

from .helpers import DIALOG_SIPP, LANGS, SIPP, cdrs, config_text, run_sipp, script, sipp_args

pytestmark = pytest.mark.sipp

# case -> (caller scenario, callee scenario, CDR end_reason, CDR status, dialog events)
CASES: dict[str, tuple[str, Path, str, int, list[str]]] = {
    "call": (
        "uac_call.xml",
        DIALOG_SIPP / "uas_answer.xml",
        "caller-bye",
        200,
        ["dialog:start", "dialog:end"],
    ),
    "cancel": ("uac_cancel.xml", SIPP / "uas_ring.xml", "cancelled", 487, ["dialog:failed"]),
    "busy": ("uac_busy.xml", DIALOG_SIPP / "uas_busy.xml", "failed", 486, ["dialog:failed"]),
}
RUNS = [(c, "udp") for c in CASES] + [("call", "tcp")]


@pytest.fixture(scope="module", params=LANGS)
def ksr(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp(request.param)
    # debug 3: the script's KSR.dbg() line for each dialog event is in the log
    with ksr_process(script(request.param), config_text(tmp, debug=3)) as k:
        k["tmp"] = tmp
        yield k


def register(user: str, ksr_port: int, uas_port: int, transport: str) -> None:
    """REGISTER from the callee's own port (UDP), with a Contact for its transport."""
    args = sipp_args(SIPP / "register.xml", uas_port) + [
        f"127.0.0.1:{ksr_port}",
        "-s",
        user,
        "-key",
        "ctproto",
        transport,
    ]
    res = run_sipp(args)
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]


def dialog_events(log: Path, call_id: str) -> list[str]:
    return [
        line.split("dialog event ", 1)[1].split()[0]
        for line in log.read_text().splitlines()
        if "dialog event " in line and call_id in line
    ]


@pytest.mark.parametrize(("case", "transport"), RUNS, ids=[f"{c}-{t}" for c, t in RUNS])
def test_call_through_default_script(ksr: dict[str, Any], case: str, transport: str) -> None:
    uac_sf, uas_sf, end_reason, status, events = CASES[case]
    user = f"{case}-{transport}"
    call_id = f"e2e-{case}-{transport}-{ksr['port']}"
    uas_port = free_port()
    register(user, ksr["port"], uas_port, transport)
    callee = subprocess.Popen(
        sipp_args(uas_sf, uas_port, transport),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(0.3)  # let the callee bind before the call reaches it
        caller = run_sipp(
            sipp_args(SIPP / uac_sf, transport=transport)
            + [f"127.0.0.1:{ksr['port']}", "-s", user, "-cid_str", call_id]
        )
        out, _ = callee.communicate(timeout=30)
    finally:
        if callee.poll() is None:
            callee.kill()
            callee.wait()
    log = ksr["log"].read_text()
    assert caller.returncode == 0, caller.stdout[-2000:] + log[-3000:]
    assert callee.returncode == 0, out[-2000:] + log[-3000:]
    (cdr,) = cdrs(ksr["tmp"], call_id)
    assert cdr["end_reason"] == end_reason
    assert cdr["status"] == status
    assert cdr["callee"] == user
    assert cdr["caller"] == "caller"
    assert (cdr["answer_time"] is not None) == (status == 200)
    time.sleep(0.3)  # a second record would be written by now
    assert len(cdrs(ksr["tmp"], call_id, want=0)) == 1
    assert dialog_events(ksr["log"], call_id) == events
    # every message of the call was well-formed and handled without a script or module error
    log = ksr["log"].read_text()
    for bad in ("dropped malformed", " ERROR ", "Traceback"):
        assert bad not in log, log[-3000:]
