"""Where a live ksr spends its CPU under the anchor's load: py-spy samples the server process
while sipp drives it, the way bench.anchor runs a point (fresh server, the anchor's script and
configuration, callees registered first for calls).

In-process figures (bench.profile_calls, bench.callgrind) run every message with hot caches;
a served message at a few hundred calls per second runs cold (each wake-up handles one or two
datagrams after sipp and the kernel ran), and costs ~2x the user CPU of the same code in a
loop. This bench shows that served cost by function. py-spy reads the process's memory from
outside (no change to the server); it sees compiled (mypyc) code as the line of the Python
caller that called into it, and samples only while the process is on a CPU.

    pip install py-spy          # or: pip install -e '.[bench]'
    python -m bench.live_profile [--what calls|reg] [--rate 200] [--seconds 8] [--hz 250]
                                 [--engine lua|python] [--top 30] [--raw FILE]

Prints the share of samples per line (self: the innermost frame) and per frame (inclusive).
By default only samples holding the GIL count (py-spy --gil): Python and compiled code at
work. py-spy tells "idle" by the thread's state, so with --with-syscalls a thread that is
runnable but waiting for a CPU counts too: a sendto that wakes sipp (which then preempts the
server) or an epoll_wait that returned shows far above its CPU (compare bench.anchor's "sys").
A high sampling rate slows the server down (py-spy stops it for each sample with
--nonblocking off; with it on, as here, the stacks may tear but the server keeps its pace):
keep --hz at a few hundred.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .anchor import Bench, Server


@contextmanager
def sampled(srv: Server, out: Path, hz: int, seconds: float, gil: bool) -> Iterator[None]:
    """py-spy records ``srv`` for ``seconds`` while the block (the load) runs."""
    spy = subprocess.Popen(
        [
            *_py_spy(),
            "record",
            "--pid",
            str(srv.proc.pid),
            "--rate",
            str(hz),
            "--duration",
            str(max(1, int(seconds))),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            "--subprocesses",  # with -n N: the worker processes
            *(["--gil"] if gil else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        _, err = spy.communicate(timeout=seconds + 30)
        if spy.returncode != 0:
            sys.exit(f"py-spy failed: {err.decode(errors='replace').strip()}")


def _py_spy() -> list[str]:
    here = Path(sys.executable).parent / "py-spy"
    found = str(here) if here.exists() else shutil.which("py-spy")
    if found is None:
        sys.exit("py-spy is not installed: pip install py-spy (or pip install -e '.[bench]')")
    return [found]


def summarize(raw: Path, top: int) -> str:
    """Self and inclusive shares from py-spy's raw (collapsed stack) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "no samples (was the server busy at all?)"
    lines = [f"{total} samples", f"-- self (innermost frame), top {top}"]
    lines += [f"{100 * n / total:5.1f} %  {f}" for f, n in own.most_common(top)]
    lines.append(f"-- inclusive (frame anywhere on the stack), top {top}")
    # frames on (nearly) every stack (the entry point, trio's run loop) say nothing: skip them
    root = max(inclusive.values())
    lines += [
        f"{100 * n / total:5.1f} %  {f}"
        for f, n in inclusive.most_common(top + 10)
        if n < 0.9 * root
    ][:top]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--what", choices=["calls", "reg"], default="calls")
    ap.add_argument("--rate", type=int, default=0, help="default: 200 calls/s, 1000 REGISTER/s")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--hz", type=int, default=250, help="py-spy's samples per second")
    ap.add_argument("--engine", choices=["lua", "python"], default="lua")
    ap.add_argument("--children", type=int, default=1, help="ksr worker processes (-n)")
    ap.add_argument(
        "--with-syscalls",
        action="store_true",
        help="also count samples outside Python (system calls: sendto, epoll_wait)",
    )
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--raw", help="also keep py-spy's collapsed stacks in this file")
    args = ap.parse_args()
    _py_spy()
    bench = Bench(argparse.Namespace(engine=args.engine, ksr_base=None))
    raw = Path(args.raw) if args.raw else Path(tempfile.mkdtemp()) / "stacks.txt"
    bench.during_load = lambda srv: sampled(
        srv, raw, args.hz, args.seconds, gil=not args.with_syscalls
    )
    which = f"ksr-n{args.children}"
    if args.what == "calls":
        point = bench.call_point(which, args.rate or 200, args.seconds)
    else:
        point = bench.register_point(which, args.rate or 1000, args.seconds)
    print(summarize(raw, args.top))
    if not point.passed:
        print("note: the point had failures; the profile is of an overloaded server")
    shutil.rmtree(bench.rundir, ignore_errors=True)


if __name__ == "__main__":
    main()
