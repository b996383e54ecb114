"""Calls per second through ksr with dialog tracking and CDRs on, next to the same proxy
without dialogs. sipp uac -> ksr (tm + dialog + acc, jsonl CDRs) -> sipp uas.

    /tmp/venv/bin/python bench/dialogs.py [--calls 600] [--rates 50,100,200,400]

For each rate, runs ``calls`` calls; a rate counts only if every call succeeded and, with
dialogs, every call has exactly one CDR. Prints the highest such rate for both setups.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.dialog.conftest import LUA_PROXY  # noqa: E402
from tests.support import free_port, ksr_process, sipp_command, write_script  # noqa: E402

SIPP = Path(__file__).resolve().parent.parent / "tests" / "dialog" / "sipp"
NO_DIALOG = LUA_PROXY.replace(
    '    KSR.dialog.var_sets("account", "acct-" .. KSR.pv.get("$fU"))\n', ""
).replace('    KSR.dialog.dlg_manage()\n    KSR.dialog.set_dlg_profile_static("calls")\n', "")


def config(tmp: Path, dialogs: bool) -> str:
    mods = '["sl", "tm", "corex", "dialog", "acc"]' if dialogs else '["sl", "tm", "corex"]'
    text = f"loadmodule = {mods}\n"
    if dialogs:
        text += f"""[modparam.dialog]
profiles_no_value = "calls"
[modparam.acc]
db_url = "jsonl://{tmp / "cdr.jsonl"}"
cdr_extra = "account=$dlg_var(account)"
"""
    return text


def run(rate: int, calls: int, dialogs: bool) -> tuple[bool, float, int]:
    tmp = Path(tempfile.mkdtemp(prefix="ksr-bench-dlg-"))
    script = write_script(tmp, LUA_PROXY if dialogs else NO_DIALOG)
    port = free_port()
    with ksr_process(script, config(tmp, dialogs), listen=[f"udp:127.0.0.1:{port}"]):
        uport = free_port()
        uas = subprocess.Popen(
            sipp_command(SIPP / "uas_answer.xml", port=uport, calls=calls, timeout=120),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        t0 = time.monotonic()
        uac = subprocess.run(
            sipp_command(
                SIPP / "uac_call.xml",
                f"127.0.0.1:{port}",
                *("-r", str(rate), "-l", str(rate * 2), "-d", "100", "-s", "bob"),
                *("-key", "uas", f"127.0.0.1:{uport}"),
                calls=calls,
                timeout=120,
            ),
            capture_output=True,
            text=True,
        )
        elapsed = time.monotonic() - t0
        try:
            uas.wait(10)
        except subprocess.TimeoutExpired:
            uas.kill()
        cdrs = 0
        if dialogs:
            p = tmp / "cdr.jsonl"
            for _ in range(50):
                if p.exists() and len(p.read_text().splitlines()) >= calls:
                    break
                time.sleep(0.1)
            ids = (
                [json.loads(x)["call_id"] for x in p.read_text().splitlines()] if p.exists() else []
            )
            cdrs = len(ids) if len(set(ids)) == len(ids) else -1
    ok = uac.returncode == 0 and (not dialogs or cdrs == calls)
    return ok, calls / elapsed, cdrs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=600)
    ap.add_argument("--rates", default="50,100,200,400")
    args = ap.parse_args()
    for dialogs in (False, True):
        best = 0.0
        for rate in [int(r) for r in args.rates.split(",")]:
            ok, cps, cdrs = run(rate, args.calls, dialogs)
            label = "dialogs+CDRs" if dialogs else "no dialogs  "
            print(
                f"{label} rate {rate:4d}/s: {'ok  ' if ok else 'FAIL'} {cps:7.1f} calls/s"
                + (f", {cdrs} CDRs" if dialogs else ""),
                flush=True,
            )
            if not ok:
                break
            best = max(best, cps)
        print(
            f"==> {'with' if dialogs else 'without'} dialogs: {best:.1f} calls/s at zero failures",
            flush=True,
        )


if __name__ == "__main__":
    main()
