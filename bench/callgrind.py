"""Instructions per operation under valgrind's callgrind: figures that stay put on a busy
machine (CPU times here vary by ±30% with the other engineers' load; instruction counts by
well under 1%). Instrumentation is on only while the operations run, not during start-up.

In one process (bench.profile_calls / bench.profile_register, their arguments after the name):

    python -m bench.callgrind inproc calls --script anchor --calls 400 --warmup 50
    python -m bench.callgrind inproc register --script anchor --db-mode 0 --count 1000

``inproc ... --cache-sim`` simulates this machine's private caches too (L1 32 KiB code and 48
KiB data, L2 2 MiB as callgrind's last level) and prints per library the instructions and the
lines of code and data that missed; with ``--evict 4194304`` (bench.profile_calls) the caches
are cold before every message, as between the datagrams of a low rate:

    python -m bench.callgrind inproc calls --script anchor --calls 150 --warmup 50 --cache-sim --evict 4194304

A real ``ksr run -n 1`` (or ``-n N``) over UDP serving bench.anchor's calls from sipp (the server process
only; low rate, as valgrind makes ksr ~50x slower: a point with failed calls is not a figure):

    python -m bench.callgrind anchor [--rate 4] [--calls 60] [--tree /other/checkout]
    python -m bench.callgrind anchor --what reg [--rate 20] [--calls 300]

``--children N`` runs ``ksr run -n N``: valgrind follows the worker processes, and the count is
printed per process (each worker, the supervisor) and summed.

Instructions leave out cache misses and the collector's memory-bound cost: compare them
before/after a change of code, not across machines, and not as times.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _totals(prefix: str) -> int:
    """The largest ``totals:`` of the callgrind files written under ``prefix`` (a dump made
    while running, and the file written at exit)."""
    best = 0
    for f in Path(prefix).parent.glob(Path(prefix).name + "*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                best = max(best, int(line.split()[1]))
        f.unlink()
    return best


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


@contextlib.contextmanager
def _instrumented(*_: Any, **__: Any) -> Iterator[None]:
    """Stands in for bench.inproc.profiled: callgrind counts only inside the block."""
    _control("-i", "on", str(os.getpid()))
    try:
        yield
    finally:
        _control("-i", "off", str(os.getpid()))


def child(which: str, args: list[str]) -> None:
    """Runs under valgrind: bench.profile_<which> with its measured loop instrumented."""
    import importlib

    mod = importlib.import_module(f"bench.profile_{which}")
    mod.profiled = _instrumented  # type: ignore[attr-defined]
    sys.argv = [f"bench.profile_{which}", *args]
    mod.main()
    import ksr.native

    print(f"build: {ksr.native.BUILD}")


def valgrind(out: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


# callgrind's simulated caches: this machine's L1 code and data caches, and its 2 MiB L2 per
# core as the last level (the L3 is large and shared: a line missing here comes from there)
CACHES = ["--cache-sim=yes", "--I1=32768,8,64", "--D1=49152,12,64", "--LL=2097152,16,64"]


def per_library(path: str, n: int) -> list[str]:
    """Exclusive cost per shared object from a callgrind file with cache events: instructions,
    L1 code misses, and the lines of code and data read from beyond L2, per operation."""
    names: dict[tuple[str, str], str] = {}
    events: list[str] = []
    totals: dict[str, list[int]] = {}
    ob, skip = "?", False

    def name(kind: str, text: str) -> str:  # callgrind's "(id) name" compression
        m = re.match(r"\((\d+)\)(?: (.*))?", text)
        if m is None:
            return text
        if m.group(2):
            names[kind, m.group(1)] = m.group(2)
        return names.get((kind, m.group(1)), text)

    for line in Path(path).read_text(errors="replace").splitlines():
        key, _, rest = line.partition("=")
        if line.startswith("events:"):
            events = line.split()[1:]
        elif key == "ob":
            ob = name("ob", rest)
        elif key == "cob":
            name("ob", rest)
        elif key == "calls":
            skip = True  # the next cost line is the call's inclusive cost
        elif line[:1] and line[0] in "0123456789+-*":
            if skip:
                skip = False
                continue
            values = [int(v) for v in line.split()[1:]]
            row = totals.setdefault(ob, [0] * len(events))
            for i, v in enumerate(values):
                row[i] += v
    shown = ["Ir", "I1mr", "ILmr", "D1mr", "DLmr"]
    at = [events.index(e) for e in shown]
    out = [f"  {'per operation':44} " + " ".join(f"{e:>10}" for e in shown)]
    for ob, row in sorted(totals.items(), key=lambda kv: -kv[1][at[2]])[:6]:
        out.append(f"  {Path(ob).name[:44]:44} " + " ".join(f"{row[i] / n:10,.0f}" for i in at))
    return out


def inproc(which: str, args: list[str]) -> None:
    caches = "--cache-sim" in args
    args = [a for a in args if a != "--cache-sim"]
    with tempfile.TemporaryDirectory(prefix="ksr-cg-") as tmp:
        out = f"{tmp}/cg.out"
        cmd = [*valgrind(out), *(CACHES if caches else [])]
        cmd += [sys.executable, "-m", "bench.callgrind", "_child", which, *args]
        env = {**os.environ, "PYTHONHASHSEED": "0"}  # dict layouts as in every other run
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
        m = re.search(r"^(\d+) (calls|registrations) in", r.stdout, re.M)
        if r.returncode != 0 or m is None:
            sys.exit(f"the run failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        n = int(m.group(1))
        rows = per_library(out, n) if caches else []
        ir = _totals(out)
        build = re.search(r"^build: (.*)$", r.stdout, re.M)
        print(f"{which}: {n} {m.group(2)}, {ir:,} instructions, {ir / n:,.0f} per operation")
        # a compiled build whose sources changed since runs pure Python: a figure to redo
        print(f"  ({build.group(1) if build else 'build unknown'})")
        if rows:  # the eviction's writes count under libc/libffi
            print("\n".join(rows))


def _per_process(tmp: str) -> dict[int, int]:
    """The instructions of each process, by pid, from the files of ``--trace-children``
    (``cg.<pid>``, and ``cg.<pid>.<n>`` for a dump made while running): the largest totals."""
    out: dict[int, int] = {}
    for f in Path(tmp).glob("cg.*"):
        m = re.match(r"cg\.(\d+)", f.name)
        if m is None:
            continue
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                pid = int(m.group(1))
                out[pid] = max(out.get(pid, 0), int(line.split()[1]))
    return out


def _label(pid: int, children: int) -> str:
    """``worker N`` for a worker process (its command line has ``--worker N``), else the
    supervisor (or the only process of ``-n 1``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    if b"--worker" in argv:
        return f"worker {argv[argv.index(b'--worker') + 1].decode()}"
    return "supervisor" if children > 1 else "server"


def anchor(
    rate: int, calls: int, tree: str, what: str = "calls", keep: str = "", children: int = 1
) -> None:
    """A ksr -n ``children`` of ``tree`` under callgrind, counted while sipp runs
    bench.anchor's calls (uac.xml) or REGISTERs (reg.xml, ``what="reg"``); ``keep``: where to
    copy callgrind's output for callgrind_annotate. valgrind follows the worker processes the
    supervisor starts (``--trace-children``, one file per process), instrumentation is
    switched on and off in every process of the tree, and the count is printed per process."""
    from . import anchor as ab

    with tempfile.TemporaryDirectory(prefix="ksr-cg-") as tmp:
        out = f"{tmp}/cg.%p"
        wrapper = Path(tmp) / "python"
        cmd = [*valgrind(out), "--trace-children=yes"]
        wrapper.write_text("#!/bin/sh\nexec " + " ".join(cmd) + f' {sys.executable} "$@"\n')
        wrapper.chmod(0o755)
        ab.sys.executable = str(wrapper)  # type: ignore[attr-defined]
        answering = ab.wait_answering

        def wait(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
            deadline = time.monotonic() + 300  # start-up under valgrind takes a minute or two
            while True:
                try:
                    answering(port, proc, log)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
            # the first worker answers while the others may still be starting (under
            # valgrind for a minute of CPU): wait until every process is idle for 3 s
            before = -1.0
            while children > 1:
                time.sleep(3.0)
                cpu = sum(ab.cpu_seconds(p) for p in ab.tree(proc.pid))
                if len(ab.tree(proc.pid)) > children and cpu - before < 0.3:
                    break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"workers not ready:\n{log.read_text()[-2000:]}")
                before = cpu

        seen = [0]
        labels: dict[int, str] = {}

        def toggle(pid: int) -> float:  # called before and after the sipp run (tree_cpu)
            seen[0] += 1
            for p in ab.tree(pid):
                if seen[0] == 1:
                    labels[p] = _label(p, children)
                    _control("-i", "on", str(p))
                elif seen[0] == 2 and p in labels:
                    _control("-d", str(p))
                    _control("-i", "off", str(p))
            return 0.0

        ab.wait_answering = wait  # type: ignore[assignment]
        ab.tree_cpu = toggle  # type: ignore[assignment]
        ab.tree_memory_kib = lambda pid: (0, 0)  # type: ignore[assignment]
        bench = ab.Bench(argparse.Namespace(engine="lua", ksr_base=tree, seconds=calls / rate))
        if tree:  # usrloc in memory, shared by the workers (bench.anchor takes db_mode 3 for
            # a checkout from before 6ed710f): the same setting as this checkout's
            bench.server = lambda which, calls: ab.ksr(  # type: ignore[method-assign]
                bench.rundir, "lua", children, 0, Path(tree)
            )
        point_of = bench.register_point if what == "reg" else bench.call_point
        name = f"ksr-n{children}"
        point = point_of(name + "@" + tree if tree else name, rate, calls / rate)
        time.sleep(1.0)  # the server has stopped and written its files
        if keep:
            for part in Path(tmp).glob("cg.*"):
                shutil.copy(part, keep + part.name[len("cg") :])
        counts = _per_process(tmp)
    op = "REGISTER" if what == "reg" else "call"
    ok = max(1, point.ok)
    ir = sum(counts.get(p, 0) for p in labels)
    note = "" if point.failed == 0 else f" (failed {op}s: not a figure, lower the rate)"
    print(
        f"ksr -n {children} {tree or REPO}: {point.ok} {op}s ok, {point.failed} failed, "
        f"{ir:,} instructions, {ir / ok:,.0f} per {op}{note}"
    )
    for p in sorted(labels, key=lambda p: labels[p]):
        n = counts.get(p, 0)
        print(f"  {labels[p]:12} (pid {p}): {n:,} instructions, {n / ok:,.0f} per {op}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "inproc":
        inproc(sys.argv[2], sys.argv[3:])
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("mode", choices=["anchor"], help="or: inproc calls|register ARGS...")
    ap.add_argument("--rate", type=int, default=4, help="calls (REGISTERs) per second offered")
    ap.add_argument("--calls", type=int, default=60, help="calls (REGISTERs) in all")
    ap.add_argument("--what", choices=["calls", "reg"], default="calls")
    ap.add_argument("--tree", default="", help="another ksr checkout to measure instead")
    ap.add_argument("--keep", default="", help="copy callgrind's output files to PATH.<pid>[.n]")
    ap.add_argument("--children", type=int, default=1, help="ksr run -n N (workers)")
    args = ap.parse_args()
    anchor(args.rate, args.calls, args.tree, args.what, args.keep, args.children)


if __name__ == "__main__":
    main()
