"""Kamailio 5.6 and ksr on the same script, side by side: the reference workload of ../shared/anchor.

Both servers run the anchor's routing script (kemi-routing.lua, or kemi-routing.py with
--engine python) with the anchor's configuration (kamailio.cfg / ksr-anchor.toml, rendered into
a run folder; the files in ../shared/anchor are read, never changed), driven by the anchor's
sipp scenarios. Every point starts a fresh server; the servers alternate (Kamailio, ksr,
Kamailio, ksr ...) so both see the same machine load. Per point: sipp's successful/failed
counts, the servers' CPU time (/proc/PID/stat of the server and all its child processes) per
operation, sipp's response-time samples (-trace_rtt) as p50/p99, and the memory of the
process tree (PSS summed, so Kamailio's shared memory counts once).

Measured points:

- REGISTER (reg.xml, users.csv, no auth: the anchor script has none) at each --reg-rates,
  highest rate with zero failures;
- calls (callees registered with reg.xml first, uas.xml answering, uac.xml calling with a 1 s
  pause between ACK and BYE) at each --call-rates, highest rate with zero failures;
- CPU per operation at one fixed rate each (--reg-cpu-rate, --call-cpu-rate);
- latency at a low rate (REGISTER→200 with reg.xml, INVITE→200 with uas-latency.xml).

    python -m bench.anchor [--seconds 6] [--reg-rates 1000,2000,4000,8000]
                           [--call-rates 200,400,800,1200] [--ksr-children 2] [--only reg,calls,cpu,latency]
                           [--engine lua|python] [--ksr-base /path/to/older/checkout]

Kamailio, its Lua and python3 modules are installed from Debian's packages when missing
(apt-get). Both listen on a free port on 127.0.0.1 instead of the anchor's 5060 (the one
substitution made in the rendered copies besides the placeholders). ksr with more than one
worker shares its in-memory usrloc between workers (since 6ed710f), so every point runs usrloc
db_mode 0 like Kamailio's; a --ksr-base checkout older than that keeps usrloc per worker, and its
call points with more than one worker run db_mode 3 on a SQLite file (the anchor toml's comment
describes that older state).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import wait_answering

from .common import REPO, count_label, cpu_seconds, free_port
from .latency_probe import invite_latency, register_latency

ANCHOR = REPO.parent / "shared" / "anchor"
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
DEBIAN_PACKAGES = {
    "kamailio": Path("/usr/sbin/kamailio"),
    "kamailio-lua-modules": KAMAILIO_MODULES / "app_lua.so",
    "kamailio-python3-modules": KAMAILIO_MODULES / "app_python3.so",
}
ANCHOR_LISTEN = "127.0.0.1:5060"
CALLEE_CONTACT = "127.0.0.1:5070"


# -- installing and rendering ---------------------------------------------------------------------


def ensure_kamailio() -> None:
    """apt-get install whatever of Kamailio and its script engines is missing (retrying while
    another dpkg holds the lock)."""
    missing = [pkg for pkg, path in DEBIAN_PACKAGES.items() if not path.exists()]
    if not missing:
        return
    print(f"installing {' '.join(missing)} from Debian's packages", flush=True)
    for attempt in range(30):
        r = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *missing],
            capture_output=True,
            text=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if r.returncode == 0:
            return
        if "lock" not in r.stderr:
            raise SystemExit(f"apt-get install {' '.join(missing)} failed:\n{r.stderr}")
        time.sleep(2 + attempt)
    raise SystemExit("apt-get: the dpkg lock stayed taken for a minute")


def render(text: str, port: int, **values: str) -> str:
    """The anchor file with its @NAME@ placeholders filled and the listen port moved."""
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text.replace(ANCHOR_LISTEN, f"127.0.0.1:{port}")


# -- process trees --------------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """pid and all its descendants (Kamailio forks its workers, ksr its worker processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [
                    int(x) for x in Path(f"/proc/{p}/task/{task}/children").read_text().split()
                ]
        except OSError:
            pass
    return out


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            pass  # exited meanwhile
    return total


def tree_system_cpu(pid: int) -> float:
    """System (kernel) CPU seconds of the tree: the part of tree_cpu spent in system calls,
    the loopback delivery of what the server sends, and the wake-ups (the rest is user CPU)."""
    total = 0.0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        total += int(fields[12]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


def tree_memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) summed over the tree, KiB. PSS shares a shared page among its users, so
    Kamailio's shared memory segment counts once."""
    pss = rss = 0
    for p in tree(pid):
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        pss += int(m.group(1)) if (m := re.search(r"^Pss:\s+(\d+)", text, re.M)) else 0
        rss += int(m.group(1)) if (m := re.search(r"^Rss:\s+(\d+)", text, re.M)) else 0
    return pss, rss


# -- the two servers ------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


# CPU sets for ``--pin SERVER:LOAD`` (taskset): the servers under test on one set of cores,
# sipp on another, so that the load generator does not share a server's cores and caches.
PIN: dict[str, str] = {}


def pinned(cmd: list[str], role: str) -> list[str]:
    """``cmd`` under ``taskset -c`` when --pin gave ``role`` ("server" or "load") a CPU set
    (a server's worker processes inherit its set)."""
    cpus = PIN.get(role)
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def set_pin(spec: str) -> None:
    """``--pin SERVER:LOAD``, e.g. ``0:1``: servers on CPU 0, sipp on CPU 1."""
    if not spec:
        return
    server, sep, load = spec.partition(":")
    if not sep or not server or not load:
        raise SystemExit(f"--pin wants SERVER_CPUS:LOAD_CPUS (e.g. 0:1), not {spec!r}")
    PIN.update(server=server, load=load)


@contextmanager
def kamailio(rundir: Path, engine: str) -> Iterator[Server]:
    port = free_port()
    # a folder of its own per server: free_port() may hand out a port an earlier point used
    krun = Path(tempfile.mkdtemp(prefix=f"kamailio-{port}-", dir=rundir))
    cfg_name = "kamailio-py.cfg" if engine == "python" else "kamailio.cfg"
    # kamailio-py.cfg includes kamailio.cfg by name: render both into the run folder
    for name in {cfg_name, "kamailio.cfg"}:
        text = (ANCHOR / name).read_text()
        (krun / name).write_text(render(text, port, HERE=str(ANCHOR), RUNDIR=str(krun)))
    log = krun / "kamailio.log"
    # shared memory (-m, MiB): with 256 Kamailio ran out at 1,600-2,400 calls/s (its script's
    # transactions and dialogs failed with "500 ... server error occurred (1/SL)", which
    # sipp counted as failed calls); 1024 leaves only real overload (408s) at those rates
    args = [
        "kamailio",
        "-DD",
        "-E",
        "-m",
        "1024",
        "-M",
        "8",
        "-Y",
        str(krun),
        "-f",
        str(krun / cfg_name),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            pinned(args, "server"), stdout=out, stderr=subprocess.STDOUT, cwd=krun
        )
    yield from _serve("kamailio", proc, port, log)


@contextmanager
def ksr(
    rundir: Path, engine: str, children: int, db_mode: int, tree: Path | None = None
) -> Iterator[Server]:
    """ksr from this checkout, or from ``tree`` (another checkout: before/after in one run)."""
    port = free_port()
    # a folder of its own per server: free_port() may hand out a port an earlier point used
    krun = Path(tempfile.mkdtemp(prefix=f"ksr-{port}-", dir=rundir))
    db_url = f"sqlite://{krun / 'location.sqlite'}"
    toml = render(
        (ANCHOR / "ksr-anchor.toml").read_text(),
        port,
        CHILDREN=str(children),
        DB_MODE=str(db_mode),
        DB_URL=db_url,
    )
    cfg = krun / "ksr-anchor.toml"
    cfg.write_text(toml)
    script = ANCHOR / ("kemi-routing.py" if engine == "python" else "kemi-routing.lua")
    log = krun / "ksr.log"
    args = [sys.executable, "-m", "ksr", "run", "--config", str(cfg), "--script", str(script)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            pinned(args, "server"),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=krun,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                **({"PYTHONPATH": str(tree)} if tree else {}),
            },
        )
    yield from _serve(f"ksr -n {children}" + ("@" + tree.name if tree else ""), proc, port, log)


def _serve(name: str, proc: subprocess.Popen[bytes], port: int, log: Path) -> Iterator[Server]:
    try:
        wait_answering(port, proc, log)
        time.sleep(0.5)  # the other workers are still starting when the first one answers
        yield Server(name, proc, port, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- sipp -----------------------------------------------------------------------------------------


@dataclass
class Point:
    server: str
    what: str
    rate: int
    ok: int = 0
    failed: int = 0
    wanted: int = 0
    cpu_us: float = 0.0
    sys_us: float = 0.0  # of cpu_us, in the kernel
    p50_us: float = 0.0
    p99_us: float = 0.0
    pss_mib: float = 0.0
    rss_mib: float = 0.0
    elapsed: float = 0.0
    planned: float = 0.0  # seconds the load should take at this rate
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every operation succeeded, and in time: a server that falls behind still ends with
        zero failures once sipp's retransmissions get through, but it did not keep up."""
        late = self.planned and self.elapsed > self.planned * 1.3 + 2
        return self.failed == 0 and self.ok >= self.wanted > 0 and not late

    def line(self) -> str:
        lat = f"rtd p50 {self.p50_us:,.0f} us p99 {self.p99_us:,.0f} us"
        state = "ok  " if self.passed else "FAIL"
        return (
            f"  {state} {self.server:<16} {self.what:<9} {self.rate:>6}/s: {self.ok}/{self.wanted} ok, "
            f"{self.failed} failed, CPU {self.cpu_us:,.0f} us/op (sys {self.sys_us:,.0f}), {lat}, "
            f"PSS {self.pss_mib:.0f} MiB (RSS {self.rss_mib:.0f}), {self.elapsed:.1f} s "
            f"{' '.join(self.notes)}"
        )


def sipp_run(rundir: Path, args: list[str], timeout: float) -> tuple[int, int, str]:
    """sipp in rundir (where it writes its rtt trace); returns (successful, failed, output)."""
    cmd = pinned(
        ["sipp", *args, "-i", "127.0.0.1", "-nostdin", "-timeout", f"{int(timeout)}s"], "load"
    )
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 20, cwd=rundir)
        out = r.stdout + r.stderr
    except subprocess.TimeoutExpired as err:
        out = str(err.stdout or "") + str(err.stderr or "")
        return count_label(out, "Successful call"), max(1, count_label(out, "Failed call")), out
    return count_label(out, "Successful call"), count_label(out, "Failed call"), out


def rtt_samples(rundir: Path, scenario: str) -> list[float]:
    """Response times (ms) from sipp's -trace_rtt files of ``scenario``, then remove them."""
    samples: list[float] = []
    for f in rundir.glob(f"{scenario}_*_rtt.csv"):
        for line in f.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3 and parts[2].strip() == "1":
                samples.append(float(parts[1]))
        f.unlink()
    return samples


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rundir = Path(tempfile.mkdtemp(prefix="ksr-anchor-"))
        for f in (ANCHOR / "sipp").iterdir():
            shutil.copy(f, self.rundir / f.name)  # sipp writes its traces next to its cwd
        self.points: list[Point] = []
        # entered around each point's load (sipp's run), given the server: bench.live_profile
        # samples the server's stacks there
        self.during_load: Callable[[Server], AbstractContextManager[object]] = lambda _: (
            nullcontext()
        )

    def server(self, which: str, calls: bool) -> AbstractContextManager[Server]:
        if which == "kamailio":
            return kamailio(self.rundir, self.args.engine)
        spec, _, base = which.partition("@")
        n = int(spec.split("-n", 1)[1])
        # usrloc in memory is shared by ksr's worker processes since 6ed710f; an older checkout
        # keeps it per worker, and finds every callee only in a shared database (db_mode 3)
        db_mode = 3 if calls and n > 1 and base else 0
        return ksr(
            self.rundir, self.args.engine, n, db_mode, Path(self.args.ksr_base) if base else None
        )

    def register_point(self, which: str, rate: int, seconds: float) -> Point:
        n = max(20, int(rate * seconds))
        with self.server(which, calls=False) as srv:
            point = Point(srv.name, "REGISTER", rate, wanted=n, planned=n / rate)
            before = tree_cpu(srv.proc.pid)
            sys_before = tree_system_cpu(srv.proc.pid)
            t0 = time.monotonic()
            with self.during_load(srv):
                ok, failed, _ = self.sipp_load(
                    srv, "reg.xml", "users.csv", rate, n, "-l", str(rate * 2)
                )
            point.elapsed = time.monotonic() - t0
            self.finish(point, srv, before, ok, failed, "reg", sys_before)
        return point

    def sipp_load(
        self, srv: Server, scenario: str, users: str, rate: int, n: int, *extra: str
    ) -> tuple[int, int, str]:
        """sipp's client side of a point: ``n`` operations of ``scenario`` at ``rate``, the
        users from ``users``, response times traced; ``extra`` arguments last."""
        args = ["-sf", scenario, f"127.0.0.1:{srv.port}", "-inf", users, "-p", str(free_port())]
        args += ["-m", str(n), "-r", str(rate), *extra, "-trace_rtt", "-rtt_freq", "1"]
        return sipp_run(self.rundir, args, timeout=n / rate * 3 + 20)

    @contextmanager
    def callee_side(
        self, which: str, scenario: str, seconds: float
    ) -> Iterator[tuple[Server, list[str]]]:
        """A fresh server with the callees registered (reg.xml, callees.csv pointing at a sipp
        UAS running ``scenario``); yields (server, notes)."""
        uas_port = free_port()
        callees = self.rundir / f"callees-{uas_port}.csv"
        text = (self.rundir / "callees.csv").read_text()
        callees.write_text(text.replace(CALLEE_CONTACT, f"127.0.0.1:{uas_port}"))
        uas = subprocess.Popen(
            pinned(
                [
                    "sipp",
                    "-sf",
                    scenario,
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(uas_port),
                    "-nostdin",
                    "-l",
                    "1000000",
                    "-timeout",
                    f"{int(seconds * 3 + 60)}s",
                ],
                "load",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.rundir,
        )
        notes = []
        try:
            with self.server(which, calls=True) as srv:
                k = len(text.splitlines()) - 1
                rok, _, _ = sipp_run(
                    self.rundir,
                    [
                        "-sf",
                        "reg.xml",
                        f"127.0.0.1:{srv.port}",
                        "-inf",
                        callees.name,
                        "-p",
                        str(free_port()),
                        "-m",
                        str(k),
                        "-r",
                        "200",
                    ],
                    timeout=30,
                )
                if rok != k:
                    notes.append(f"(callee registration: {rok} of {k} ok)")
                yield srv, notes
        finally:
            uas.kill()
            uas.wait()
            callees.unlink()

    def call_point(self, which: str, rate: int, seconds: float) -> Point:
        n = max(10, int(rate * seconds))
        with self.callee_side(which, "uas.xml", seconds) as (srv, notes):
            point = Point(srv.name, "calls", rate, wanted=n, planned=n / rate + 1.1, notes=notes)
            before = tree_cpu(srv.proc.pid)
            sys_before = tree_system_cpu(srv.proc.pid)
            t0 = time.monotonic()
            with self.during_load(srv):
                ok, failed, _ = self.sipp_load(
                    srv,
                    "uac.xml",
                    "callees-uac.csv",
                    rate,
                    n,
                    "-d",
                    "1000",
                    "-l",
                    str(rate * 6 + 100),
                )
            point.elapsed = time.monotonic() - t0
            self.finish(point, srv, before, ok, failed, "uac", sys_before)
        return point

    def latency_point(self, which: str, what: str, rate: int, count: int) -> Point:
        """Response times in µs, one request at a time (bench/latency_probe.py)."""
        if what == "REGISTER":
            with self.server(which, calls=False) as srv:
                samples = register_latency(srv.port, count, rate)
                point = Point(srv.name, "REGISTER→", rate, wanted=count)
        else:
            with self.callee_side(which, "uas-latency.xml", count / rate) as (srv, notes):
                samples = invite_latency(srv.port, "callee000", count, rate)
                point = Point(srv.name, "INVITE→", rate, wanted=count, notes=notes)
        point.ok, point.failed = len(samples), count - len(samples)
        point.p50_us, point.p99_us = percentile(samples, 50), percentile(samples, 99)
        self.points.append(point)
        print(point.line(), flush=True)
        return point

    def finish(
        self,
        point: Point,
        srv: Server,
        cpu_before: float,
        ok: int,
        failed: int,
        scenario: str,
        sys_before: float = 0.0,
    ) -> None:
        point.ok, point.failed = ok, failed
        point.cpu_us = (tree_cpu(srv.proc.pid) - cpu_before) / ok * 1e6 if ok else 0.0
        point.sys_us = (tree_system_cpu(srv.proc.pid) - sys_before) / ok * 1e6 if ok else 0.0
        pss, rss = tree_memory_kib(srv.proc.pid)
        point.pss_mib, point.rss_mib = pss / 1024, rss / 1024
        samples = rtt_samples(self.rundir, scenario)
        point.p50_us = percentile(samples, 50) * 1000  # sipp counts whole milliseconds
        point.p99_us = percentile(samples, 99) * 1000
        self.points.append(point)
        print(point.line(), flush=True)

    # -- the measurement plan, interleaved ---------------------------------------------------------

    def servers(self) -> list[str]:
        ours = [f"ksr-n{n}" for n in self.args.ksr_children]
        if self.args.ksr_base:  # the same ksr configurations from the other checkout
            ours += [f"ksr-n{n}@base" for n in self.args.ksr_children]
        return ["kamailio", *ours]

    def highest(self, what: str, rates: list[int]) -> dict[str, int]:
        """Each rate on each server in turn (fresh server each); a server that failed a rate
        is not tried at higher ones."""
        best = dict.fromkeys(self.servers(), 0)
        live = set(best)
        for rate in rates:
            for which in self.servers():
                if which not in live:
                    continue
                if what == "REGISTER":
                    p = self.register_point(which, rate, self.args.seconds)
                else:
                    p = self.call_point(which, rate, self.args.seconds)
                if p.passed:
                    best[which] = rate
                else:
                    live.discard(which)
        return best

    def at_rate(self, what: str, rate: int, seconds: float, repeat: int) -> dict[str, list[Point]]:
        got: dict[str, list[Point]] = {w: [] for w in self.servers()}
        for _ in range(repeat):
            for which in self.servers():
                if what == "REGISTER":
                    got[which].append(self.register_point(which, rate, seconds))
                else:
                    got[which].append(self.call_point(which, rate, seconds))
        return got


def summary(results: dict[str, dict[str, float]], servers: list[str]) -> None:
    kam = "kamailio"
    print(
        "\n| measure | "
        + " | ".join(servers)
        + " | "
        + " | ".join(f"{s}/kamailio" for s in servers[1:])
        + " |"
    )
    print("|---" * (len(servers) * 2) + "|")
    for measure, row in results.items():
        vals = [row.get(s, 0.0) for s in servers]
        ratios = [
            f"{row[s] / row[kam]:.2f}" if row.get(kam) and s in row else "-" for s in servers[1:]
        ]
        print(
            f"| {measure} | "
            + " | ".join(f"{v:,.0f}" for v in vals)
            + " | "
            + " | ".join(ratios)
            + " |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds of load per point")
    ap.add_argument("--reg-rates", default="1000,2000,4000,8000")
    ap.add_argument("--call-rates", default="200,400,800,1200")
    ap.add_argument("--reg-cpu-rate", type=int, default=1000, help="REGISTER/s of the CPU point")
    ap.add_argument("--call-cpu-rate", type=int, default=200, help="calls/s of the CPU point")
    ap.add_argument("--repeat", type=int, default=2, help="CPU and latency points per server")
    ap.add_argument("--ksr-children", default="2", help="ksr worker counts to run, e.g. 2,1")
    ap.add_argument(
        "--ksr-base",
        default="",
        help="another ksr checkout (e.g. a git worktree of an older commit) run as well, "
        "interleaved: before/after in one run",
    )
    ap.add_argument("--engine", choices=["lua", "python"], default="lua")
    ap.add_argument(
        "--pin",
        default="",
        help="SERVER:LOAD CPU sets for taskset, e.g. 0:1 (sipp off the servers' cores)",
    )
    ap.add_argument("--only", default="reg,calls,cpu,latency", help="which parts to run")
    args = ap.parse_args()
    set_pin(args.pin)
    args.ksr_children = [int(x) for x in str(args.ksr_children).split(",")]
    parts = set(args.only.split(","))
    ensure_kamailio()
    bench = Bench(args)
    servers = bench.servers()
    print(
        f"anchor: {ANCHOR} ({args.engine}); run folder {bench.rundir}; load average {os.getloadavg()}",
        flush=True,
    )
    results: dict[str, dict[str, float]] = {}

    def mean(points: list[Point], attr: str) -> float:
        vals = [getattr(p, attr) for p in points if p.ok]
        return statistics.mean(vals) if vals else 0.0

    if "reg" in parts:
        print("highest REGISTER/s with zero failures:", flush=True)
        results["REGISTER/s, zero failures"] = {
            k: float(v) for k, v in bench.highest("REGISTER", _ints(args.reg_rates)).items()
        }
    if "calls" in parts:
        print("highest calls/s with zero failures:", flush=True)
        results["calls/s, zero failures"] = {
            k: float(v) for k, v in bench.highest("calls", _ints(args.call_rates)).items()
        }
    if "cpu" in parts:
        print(f"CPU per operation at fixed rates ({args.repeat} fresh servers each):", flush=True)
        reg_cpu = bench.at_rate("REGISTER", args.reg_cpu_rate, args.seconds, args.repeat)
        call_cpu = bench.at_rate("calls", args.call_cpu_rate, args.seconds, args.repeat)
        results[f"CPU us per REGISTER at {args.reg_cpu_rate}/s"] = {
            s: mean(reg_cpu[s], "cpu_us") for s in servers
        }
        results[f"CPU us per call at {args.call_cpu_rate}/s"] = {
            s: mean(call_cpu[s], "cpu_us") for s in servers
        }
        # the user/kernel split: a server's own code is the user part; the kernel part is
        # mostly sendto (loopback delivery to sipp) and the wake-ups, alike for both servers
        results[f"  of which sys, per REGISTER at {args.reg_cpu_rate}/s"] = {
            s: mean(reg_cpu[s], "sys_us") for s in servers
        }
        results[f"  of which sys, per call at {args.call_cpu_rate}/s"] = {
            s: mean(call_cpu[s], "sys_us") for s in servers
        }
        results[f"PSS MiB after {args.call_cpu_rate} calls/s"] = {
            s: mean(call_cpu[s], "pss_mib") for s in servers
        }
    if "latency" in parts:
        print("latency at a low rate:", flush=True)
        count = int(args.seconds * 100)
        reg: dict[str, list[Point]] = {s: [] for s in servers}
        inv: dict[str, list[Point]] = {s: [] for s in servers}
        for _ in range(args.repeat):  # interleaved, like every other part
            for s in servers:
                reg[s].append(bench.latency_point(s, "REGISTER", 100, count))
            for s in servers:
                inv[s].append(bench.latency_point(s, "INVITE", 100, count))
        results["REGISTER→200 p50 us"] = {s: mean(reg[s], "p50_us") for s in servers}
        results["REGISTER→200 p99 us"] = {s: mean(reg[s], "p99_us") for s in servers}
        results["INVITE→200 p50 us"] = {s: mean(inv[s], "p50_us") for s in servers}
        results["INVITE→200 p99 us"] = {s: mean(inv[s], "p99_us") for s in servers}
    print(f"\nload average at the end {os.getloadavg()}")
    summary(results, servers)
    shutil.rmtree(bench.rundir, ignore_errors=True)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


if __name__ == "__main__":
    main()
