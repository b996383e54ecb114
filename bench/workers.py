"""What a second worker costs and adds: the anchor workload on ``ksr run -n N``, CPU per process.

For each worker count, a fresh ksr runs ../shared/anchor's script and configuration (usrloc in
memory, shared by the workers); the callees register, then sipp places calls (or registers)
at a fixed rate. Printed per run: each process's CPU time (supervisor, worker 0, worker 1, ...)
while idle and under load, the CPU µs per operation summed over the process tree, and per
process its system (kernel) CPU and voluntary context switches (wake-ups) per operation.

The figure that answers "does -n N scale" on a shared machine is the summed CPU per operation:
with N free cores, N workers sustain N × (CPU per op at -n 1) / (CPU per op at -n N) times the
rate of one worker, provided the work spreads evenly (the per-worker split is printed too).

    python -m bench.workers [--children 1,2] [--what calls,reg] [--rate 200] [--seconds 8]
                            [--repeat 2] [--idle 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import AbstractContextManager
from pathlib import Path

from .anchor import Bench, Server, ksr, set_pin, sipp_run, tree
from .common import cpu_seconds, free_port


class WorkersBench(Bench):
    """bench.anchor's runner with usrloc in memory for every ksr, also ``--ksr-base`` (an
    older checkout with shared usrloc; bench.anchor gives older ones db_mode 3)."""

    def server(self, which: str, calls: bool) -> AbstractContextManager[Server]:
        spec, _, base = which.partition("@")
        n = int(spec.split("-n", 1)[1])
        tree_path = Path(self.args.ksr_base) if base else None
        return ksr(self.rundir, self.args.engine, n, 0, tree_path)


def per_process(pid: int) -> dict[int, float]:
    out = {}
    for p in tree(pid):
        try:
            out[p] = cpu_seconds(p)
        except OSError:
            pass
    return out


def kernel_side(pid: int) -> dict[int, tuple[float, int]]:
    """Per process: system CPU seconds and voluntary context switches (wake-ups)."""
    out = {}
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        switches = next(
            int(line.split()[1])
            for line in status.splitlines()
            if line.startswith("voluntary_ctxt_switches")
        )
        out[p] = (int(fields[12]) / os.sysconf("SC_CLK_TCK"), switches)
    return out


def show_kernel(
    a: dict[int, tuple[float, int]], b: dict[int, tuple[float, int]], nm: dict[int, str], ops: int
) -> str:
    parts = []
    for p in sorted(b, key=lambda x: nm.get(x, "")):
        sys_s = b[p][0] - a.get(p, (0.0, 0))[0]
        wakes = b[p][1] - a.get(p, (0.0, 0))[1]
        parts.append(f"{nm.get(p, p)} {sys_s * 1e6 / ops:,.0f} us, {wakes / ops:.1f} wake-ups")
    return "kernel side per op: " + "; ".join(parts)


def names(pid: int) -> dict[int, str]:
    out = {}
    for p in tree(pid):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--worker" in cmd:
            out[p] = "w" + cmd[cmd.index(b"--worker") + 1].decode()
        elif p == pid:
            out[p] = "sup"
        else:
            out[p] = cmd[0].decode().rsplit("/", 1)[-1]
    return out


def delta(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    return {p: b[p] - a.get(p, 0.0) for p in b}


def show(label: str, d: dict[int, float], nm: dict[int, str], ops: int, secs: float) -> str:
    parts = [
        f"{nm.get(p, p)} {v * 1e6 / ops:,.0f}"
        for p, v in sorted(d.items(), key=lambda x: nm.get(x[0], ""))
    ]
    tot = sum(d.values())
    return f"{label}: {tot * 1e6 / ops:,.0f} us/op ({', '.join(parts)}); {tot / secs * 100:.0f}% of a core"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--children", default="1,2")
    ap.add_argument("--what", default="calls,reg")
    ap.add_argument("--rate", type=int, default=200, help="calls/s")
    ap.add_argument("--reg-rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument("--engine", default="lua")
    ap.add_argument(
        "--ksr-base", default="", help="another checkout, run interleaved (before/after)"
    )
    ap.add_argument("--pin", default="", help="SERVER:LOAD CPU sets for taskset, e.g. 0:1")
    args = ap.parse_args()
    set_pin(args.pin)
    args.ksr_children = [int(x) for x in args.children.split(",")]
    bench = WorkersBench(args)
    print(f"load average {os.getloadavg()}", flush=True)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.repeat):
        for what in args.what.split(","):
            runs = [f"ksr-n{n}" for n in args.ksr_children]
            if args.ksr_base:
                runs = [w for n in args.ksr_children for w in (f"ksr-n{n}", f"ksr-n{n}@base")]
            for which in runs:
                n = int(which.split("-n", 1)[1].split("@")[0])
                # the callees register first (for REGISTER points too: same start for both)
                with bench.callee_side(which, "uas.xml", args.seconds) as (srv, _):
                    nm = names(srv.proc.pid)
                    a = per_process(srv.proc.pid)
                    time.sleep(args.idle)
                    b = per_process(srv.proc.pid)
                    idle = sum(delta(a, b).values()) / args.idle
                    rate = args.rate if what == "calls" else args.reg_rate
                    count = int(rate * args.seconds)
                    t0 = time.monotonic()
                    k0 = kernel_side(srv.proc.pid)
                    if what == "calls":
                        ok, failed, _ = sipp_run(
                            bench.rundir,
                            [
                                "-sf",
                                "uac.xml",
                                f"127.0.0.1:{srv.port}",
                                "-inf",
                                "callees-uac.csv",
                                "-p",
                                str(free_port()),
                                "-m",
                                str(count),
                                "-r",
                                str(rate),
                                "-d",
                                "1000",
                                "-l",
                                str(rate * 6 + 100),
                            ],
                            timeout=args.seconds * 3 + 20,
                        )
                    else:
                        ok, failed, _ = sipp_run(
                            bench.rundir,
                            [
                                "-sf",
                                "reg.xml",
                                f"127.0.0.1:{srv.port}",
                                "-inf",
                                "users.csv",
                                "-p",
                                str(free_port()),
                                "-m",
                                str(count),
                                "-r",
                                str(rate),
                                "-l",
                                str(rate * 2),
                            ],
                            timeout=args.seconds * 3 + 15,
                        )
                    el = time.monotonic() - t0
                    c = per_process(srv.proc.pid)
                    k1 = kernel_side(srv.proc.pid)
                    d = delta(b, c)
                    print(
                        f"{which} {what} {rate}/s: {ok} ok {failed} failed in {el:.1f}s; idle "
                        f"{idle * 100:.1f}% of a core; load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                    print("   " + show("CPU", d, nm, max(ok, 1), el), flush=True)
                    idle_adj = {
                        p: v - (b[p] - a.get(p, 0.0)) / args.idle * el for p, v in d.items()
                    }
                    print("   " + show("CPU minus idle", idle_adj, nm, max(ok, 1), el), flush=True)
                    print("   " + show_kernel(k0, k1, nm, max(ok, 1)), flush=True)
                    served = [v for p, v in idle_adj.items() if nm.get(p, "") != "sup" or n == 1]
                    if ok and not failed:
                        results.setdefault((what, which), []).append(
                            (sum(idle_adj.values()) * 1e6 / ok, max(served) * 1e6 / ok)
                        )
    print("\nmedians (CPU us per operation, whole tree / busiest worker), and what N workers")
    print("on N free cores would sustain against one: -n 1's CPU / the busiest worker's CPU")
    for (what, which), got in sorted(results.items()):
        total = statistics.median(g[0] for g in got)
        busiest = statistics.median(g[1] for g in got)
        one = results.get((what, "ksr-n1" + which.partition("@")[1] + which.partition("@")[2]))
        ratio = ""
        if one:
            ratio = f"; {statistics.median(g[0] for g in one) / busiest:.2f}x of -n 1's rate"
        print(
            f"  {which:<12} {what:<6} {total:7,.0f} / {busiest:7,.0f} us ({len(got)} runs){ratio}"
        )


if __name__ == "__main__":
    main()
