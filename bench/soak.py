"""Memory under a long run: resident memory of every ksr process while calls go on at a
steady rate.

Default (``--minutes``): the reference workload (../shared/anchor: sanity, dialog, record-route,
location lookup, tm) on ``ksr run -n N``, callees registered first, one sipp caller placing
calls (INVITE, 180, 200, ACK, 1 s, BYE) at ``--rate`` without pause for ``--minutes``. Every
``--every`` seconds it prints each worker's resident memory (VmRSS) and the call count; at the
end the growth of each worker from the first sample after the warm-up (``--warm`` seconds:
transactions and dialogs reach their steady number after wt_timer and the call length) to the
last, and the growth per 1,000 calls. Flat means no leak.

``--rounds`` keeps the older form: bench/calls.py's lean script on one worker, rounds of calls
with a pause after each, RSS after each round.

    python -m bench.soak [--minutes 10] [--rate 100] [--children 2] [--every 30] [--warm 60]
    python -m bench.soak --rounds 6 [--rate 800] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .anchor import Bench
from .calls import CONFIG, SCRIPT, run_calls, with_callee
from .common import count_label, free_port, ksr_server


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def workers(pid: int) -> dict[str, int]:
    """name -> pid of the processes that serve: the workers of ``-n N`` (w0, w1 ...), or the
    one process of ``-n 1``."""
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        kids = []
    out = {}
    for k in kids:
        cmd = Path(f"/proc/{k}/cmdline").read_bytes().split(b"\0")
        if b"--worker" in cmd:
            out["w" + cmd[cmd.index(b"--worker") + 1].decode()] = k
    return dict(sorted(out.items())) or {"ksr": pid}


def steady(args: argparse.Namespace) -> None:
    args.engine, args.ksr_base = "lua", ""
    bench = Bench(args)
    seconds = args.minutes * 60
    with bench.callee_side(f"ksr-n{args.children}", "uas.xml", seconds) as (srv, notes):
        procs = workers(srv.proc.pid)
        print(
            f"ksr -n {args.children} ({', '.join(f'{k} pid {v}' for k, v in procs.items())}) "
            f"{' '.join(notes)}; {args.rate} calls/s for {args.minutes} min; "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        n = int(args.rate * seconds)
        sipp = subprocess.Popen(
            [
                "sipp",
                "-sf",
                "uac.xml",
                f"127.0.0.1:{srv.port}",
                "-inf",
                "callees-uac.csv",
                "-i",
                "127.0.0.1",
                "-p",
                str(free_port()),
                "-m",
                str(n),
                "-r",
                str(args.rate),
                "-d",
                "1000",
                "-l",
                str(args.rate * 6 + 100),
                "-nostdin",
                "-timeout",
                f"{int(seconds + 60)}s",
                "-trace_stat",
                "-stf",
                "stat.csv",
                "-fd",
                "5",
            ],
            cwd=bench.rundir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        t0 = time.monotonic()
        samples: list[tuple[float, int, dict[str, int]]] = []
        stopping = False
        while True:
            done = sipp.poll() is not None
            t = time.monotonic() - t0
            if t >= seconds and not done and not stopping:
                sipp.send_signal(signal.SIGUSR1)  # behind its rate: no new calls, then it ends
                stopping = True
            mem = {k: rss_kib(p) for k, p in procs.items()}
            calls = _calls(bench.rundir / "stat.csv")
            samples.append((t, calls, mem))
            print(
                f"  {t:6.0f} s: {calls:>7} calls  "
                + "  ".join(f"{k} {v / 1024:6.1f} MiB" for k, v in mem.items()),
                flush=True,
            )
            if done:
                break
            time.sleep(args.every if t < seconds else 2.0)
        out = sipp.communicate()[0]
        ok, failed = count_label(out, "Successful call"), count_label(out, "Failed call")
        warm = [s for s in samples if s[0] >= args.warm] or samples
        first, last = warm[0], samples[-1]
        between = max(1, (ok or last[1]) - first[1])
        print(f"sipp: {ok} calls ok, {failed} failed; load average {os.getloadavg()[0]:.1f}")
        for k in procs:
            grow = last[2][k] - first[2][k]
            print(
                f"  {k}: {first[2][k] / 1024:.1f} MiB at {first[0]:.0f} s -> "
                f"{last[2][k] / 1024:.1f} MiB at {last[0]:.0f} s ({grow / 1024:+.1f} MiB over "
                f"{between} calls, {grow / between * 1000:+.1f} KiB per 1,000 calls)"
            )


def _calls(stat: Path) -> int:
    """Successful calls so far from sipp's statistics file (its last line)."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return 0
    if len(lines) < 2:
        return 0
    head, last = lines[0].split(";"), lines[-1].split(";")
    try:
        return int(last[head.index("SuccessfulCall(C)")])
    except (ValueError, IndexError):
        return 0


def rounds(args: argparse.Namespace) -> None:
    def soak(uas_port: int) -> None:
        script = Path(tempfile.mkdtemp(prefix="ksr-soak-")) / "calls.lua"
        script.write_text(SCRIPT % uas_port)
        with ksr_server(script, CONFIG) as (port, proc):
            print(f"start: ksr RSS {rss_kib(proc.pid) / 1024:.1f} MiB")
            total = 0
            for n in range(1, args.rounds + 1):
                ok, failed = run_calls(f"127.0.0.1:{port}", args.rate, args.seconds)
                total += ok
                time.sleep(7)  # wt_timer (5 s) lets finished transactions go
                print(
                    f"round {n}: {ok} calls ok, {failed} failed, {total} in all; "
                    f"ksr RSS {rss_kib(proc.pid) / 1024:.1f} MiB",
                    flush=True,
                )

    with_callee(soak)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--children", type=int, default=2)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument(
        "--warm", type=float, default=60.0, help="seconds before the first sample counted"
    )
    ap.add_argument("--rounds", type=int, default=0, help="the older form: rounds of calls")
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0, help="--rounds: seconds per round")
    args = ap.parse_args()
    if args.rounds:
        rounds(args)
    else:
        steady(args)


if __name__ == "__main__":
    main()
