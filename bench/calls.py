"""Calls through ksr: sipp caller -> ksr (tm + rr) -> sipp callee, INVITE to BYE.

Prints the highest call rate with zero failed calls, ksr's CPU time per call, and the same
scenario with the caller talking straight to the callee (the load generator's own ceiling).
CPU on a shared machine is noisy: compare runs made at the same time only.

    python -m bench.calls [--rates 50,100,200,400,800] [--seconds 3] [--children N]

``--children N`` runs ``ksr run -n N`` (worker processes, docs/workers.md); the CPU time is
then the sum over the supervisor and its workers.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .common import SIPP_DIR, cpu_seconds, find_max_rate, free_port, ksr_server, sipp

SCRIPT = """
function ksr_request_route()
  if KSR.is_OPTIONS() then KSR.sl.sl_send_reply(200, "OK") return 1 end
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if not KSR.is_ACK() and KSR.tm.t_check_trans() == 0 then return 1 end
  if KSR.pv.get("$tt") ~= nil then
    if KSR.rr.loose_route() > 0 then KSR.tm.t_relay() return 1 end
    if KSR.is_ACK() and KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  KSR.hdr.remove("Route")
  if KSR.is_method_in("IS") then KSR.rr.record_route() end
  KSR.setdsturi("sip:127.0.0.1:%d")
  if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
end
"""
CONFIG = 'loadmodule = ["sl", "tm", "tmx", "rr"]\n'


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (the workers of ``ksr run -n N``)."""
    total = cpu_seconds(pid)
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for kid in kids:
        try:
            total += cpu_seconds(int(kid))
        except OSError:
            pass  # a worker that just exited
    return total


def run_calls(target: str, rate: int, seconds: float) -> tuple[int, int]:
    n = max(10, int(rate * seconds))
    ok, failed, _ = sipp(
        [
            "-sf",
            str(SIPP_DIR / "call_uac.xml"),
            target,
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-m",
            str(n),
            "-r",
            str(rate),
            "-l",
            str(rate * 4),
        ],
        timeout=60,
    )
    return ok, failed


def with_callee(fn: Callable[[int], None]) -> None:
    port = free_port()
    uas = subprocess.Popen(
        [
            "sipp",
            "-sf",
            str(SIPP_DIR / "call_uas.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-nostdin",
            "-l",
            "100000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        fn(port)
    finally:
        uas.kill()
        uas.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="50,100,200,400,800,1200")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--children", type=int, default=1, help="ksr worker processes (ksr run -n N)")
    args = ap.parse_args()
    rates = [int(x) for x in args.rates.split(",")]

    def through_ksr(uas_port: int) -> None:
        script = Path(tempfile.mkdtemp(prefix="ksr-bench-")) / "calls.lua"
        script.write_text(SCRIPT % uas_port)
        print(f"calls through ksr (sipp uac -> ksr -> sipp uas), {args.children} worker(s):")
        with ksr_server(script, CONFIG, extra=["-n", str(args.children)]) as (port, proc):
            if args.children > 1:
                time.sleep(3.0)  # one worker answered the readiness probe; let the others start

            def run_at(rate: int) -> tuple[int, int]:
                before = tree_cpu(proc.pid)
                ok, failed = run_calls(f"127.0.0.1:{port}", rate, args.seconds)
                used = tree_cpu(proc.pid) - before
                if ok:
                    print(
                        f"    ksr CPU {used / ok * 1e6:.0f} us per call ({ok / used if used else 0:.0f} calls/s per core)"
                    )
                return ok, failed

            best, _ = find_max_rate(run_at, rates)
        print(f"highest call rate through ksr with zero failed calls: {best}/s")

    def direct(uas_port: int) -> None:
        print("same scenario, sipp uac -> sipp uas (no proxy):")
        best, _ = find_max_rate(
            lambda r: run_calls(f"127.0.0.1:{uas_port}", r, args.seconds), rates
        )
        print(f"highest call rate without a proxy: {best}/s")

    with_callee(through_ksr)
    with_callee(direct)


if __name__ == "__main__":
    main()
