"""sipp call scenarios through a ksr subprocess (sipp uac -> ksr tm+dialog+acc -> sipp uas).

For each way a call ends: both sipp sides succeed, the event callback ran once with the right
name, and there is exactly one CDR with the right end reason, status and duration."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ksr.rpc_client import call as rpc_call
from tests.support import free_port, ksr_process, sipp_command, write_script

from .conftest import LUA_PROXY

SIPP = Path(__file__).parent / "sipp"
pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "sipp"], capture_output=True).returncode != 0,
    reason="sipp not installed",
)

SCRIPT = LUA_PROXY.replace(
    "function ksr_dialog_event(evname)\n",
    'function ksr_dialog_event(evname)\n  KSR.info("DLGEVENT " .. evname .. " " .. KSR.pv.getw("$dlg(callid)") .. "\\n")\n',
)


def config(tmp: Path, dialog: str = "", tm: str = "") -> str:
    return f"""
loadmodule = ["sl", "tm", "corex", "jsonrpcs", "dialog", "acc"]
[modparam.dialog]
event_callback = "ksr_dialog_event"
profiles_no_value = "calls"
{dialog}
[modparam.acc]
db_url = "jsonl://{tmp / "cdr.jsonl"}"
cdr_extra = "account=$dlg_var(account)"
[modparam.tm]
{tm}
"""


def _pause(ms: int) -> list[str]:
    """sipp's default pause (-d), where the scenario has one."""
    return ["-d", str(ms)] if ms else []


@contextmanager
def uas(scenario: str, pause_ms: int = 0) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    args = sipp_command(SIPP / scenario, *_pause(pause_ms), port=port)
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(SIPP.parent.parent.parent / "tests" / "dialog"),
    )
    time.sleep(0.2)
    try:
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def uac(
    scenario: str, ksr_port: int, uas_port: int, pause_ms: int = 0, wait: bool = True
) -> subprocess.Popen[str]:
    target = f"127.0.0.1:{ksr_port}"
    uas = f"127.0.0.1:{uas_port}"
    args = sipp_command(SIPP / scenario, target, "-s", "bob", "-key", "uas", uas, *_pause(pause_ms))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        proc.wait(40)
    return proc


def cdrs_of(tmp: Path) -> list[dict[str, Any]]:
    p = tmp / "cdr.jsonl"
    for _ in range(50):
        if p.exists() and p.read_text().strip():
            break
        time.sleep(0.1)
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def events_of(log: Path) -> list[str]:
    return [
        line.split("DLGEVENT ", 1)[1].split()[0]
        for line in log.read_text().splitlines()
        if "DLGEVENT " in line
    ]


def run_call(
    tmp: Path,
    uac_sf: str,
    uas_sf: str,
    uac_pause: int = 0,
    uas_pause: int = 0,
    dialog: str = "",
    tm: str = "",
    during: Any = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    script = write_script(tmp, SCRIPT)
    port = free_port()
    with ksr_process(script, config(tmp, dialog, tm), listen=[f"udp:127.0.0.1:{port}"]) as k:
        with uas(uas_sf, uas_pause) as (uport, uproc):
            c = uac(uac_sf, port, uport, uac_pause, wait=during is None)
            if during is not None:
                during(k)
                c.wait(40)
            out_c = c.stdout.read() if c.stdout else ""
            uproc.wait(40)
            out_s = uproc.stdout.read() if uproc.stdout else ""
            assert c.returncode == 0, out_c[-2000:] + k["log"].read_text()[-3000:]
            assert uproc.returncode == 0, out_s[-2000:] + k["log"].read_text()[-3000:]
        recs = cdrs_of(tmp)
        time.sleep(0.2)
        return events_of(k["log"]), recs


def test_sipp_caller_hangs_up(tmp_path: Path) -> None:
    evs, recs = run_call(tmp_path, "uac_call.xml", "uas_answer.xml", uac_pause=1000)
    assert evs == ["dialog:start", "dialog:end"]
    (r,) = recs
    assert r["end_reason"] == "caller-bye"
    assert r["status"] == 200
    assert r["caller"] == "sipp"
    assert r["callee"] == "bob"
    assert r["account"] == "acct-sipp"
    assert 0.9 <= r["duration"] <= 2.5


def test_sipp_callee_hangs_up(tmp_path: Path) -> None:
    evs, recs = run_call(tmp_path, "uac_wait_bye.xml", "uas_bye.xml", uas_pause=1000)
    assert evs == ["dialog:start", "dialog:end"]
    (r,) = recs
    assert r["end_reason"] == "callee-bye"
    assert 0.9 <= r["duration"] <= 2.5


def test_sipp_caller_cancels(tmp_path: Path) -> None:
    evs, recs = run_call(tmp_path, "uac_cancel.xml", "uas_ring.xml", uac_pause=500)
    assert evs == ["dialog:failed"]
    (r,) = recs
    assert r["end_reason"] == "cancelled"
    assert r["status"] == 487
    assert r["duration"] == 0


def test_sipp_callee_busy(tmp_path: Path) -> None:
    evs, recs = run_call(tmp_path, "uac_fail_486.xml", "uas_busy.xml")
    assert evs == ["dialog:failed"]
    (r,) = recs
    assert r["end_reason"] == "failed"
    assert r["status"] == 486
    assert r["answer_time"] is None


def test_sipp_no_answer(tmp_path: Path) -> None:
    evs, recs = run_call(tmp_path, "uac_fail_408.xml", "uas_ring.xml", tm="fr_inv_timer = 1500")
    assert evs == ["dialog:failed"]
    (r,) = recs
    assert r["status"] == 408
    assert r["end_reason"] == "failed"


def test_sipp_timeout_bye_from_ksr(tmp_path: Path) -> None:
    evs, recs = run_call(
        tmp_path, "uac_wait_bye.xml", "uas_answer.xml", dialog="default_timeout = 2\nsend_bye = 1"
    )
    assert evs == ["dialog:start", "dialog:end"]
    (r,) = recs
    assert r["end_reason"] == "timeout"
    assert 1.9 <= r["duration"] <= 3.5


def test_sipp_end_by_rpc(tmp_path: Path) -> None:
    def end_it(k: dict[str, Any]) -> None:
        for _ in range(100):
            res = rpc_call(k["rpc"], {"jsonrpc": "2.0", "method": "dlg.list", "id": 1})["result"]
            if res and res[0]["state"] == 4:
                break
            time.sleep(0.05)
        time.sleep(1.0)
        r = rpc_call(
            k["rpc"],
            {
                "jsonrpc": "2.0",
                "method": "dlg.end_dlg",
                "params": [res[0]["h_entry"], res[0]["h_id"]],
                "id": 2,
            },
        )
        assert r["result"] == "OK"

    evs, recs = run_call(tmp_path, "uac_wait_bye.xml", "uas_answer.xml", during=end_it)
    assert evs == ["dialog:start", "dialog:end"]
    (r,) = recs
    assert r["end_reason"] == "rpc"
    assert 0.9 <= r["duration"] <= 2.5


def test_sipp_restart_mid_call(tmp_path: Path) -> None:
    script = write_script(tmp_path, SCRIPT)
    port = free_port()
    cfg = config(tmp_path, f'db_mode = 1\ndb_url = "sqlite://{tmp_path / "dlg.sqlite"}"')
    listen = [f"udp:127.0.0.1:{port}"]
    with uas("uas_answer.xml") as (uport, uproc):
        with ksr_process(script, cfg, listen=listen) as k1:
            c = uac("uac_call.xml", port, uport, pause_ms=3000, wait=False)
            for _ in range(100):
                if "DLGEVENT dialog:start" in k1["log"].read_text():
                    break
                time.sleep(0.05)
        first = events_of(k1["log"])
        with ksr_process(script, cfg, listen=listen) as k2:
            c.wait(40)
            uproc.wait(40)
            assert c.returncode == 0, (c.stdout.read() if c.stdout else "") + k2["log"].read_text()
            assert uproc.returncode == 0
            recs = cdrs_of(tmp_path)
            assert "1 dialogs restored" in k2["log"].read_text()
            second = events_of(k2["log"])
    assert first == ["dialog:start"]
    assert second == ["dialog:end"]
    (r,) = recs
    assert r["end_reason"] == "caller-bye"
    assert 2.5 <= r["duration"] <= 5
