"""A database that answers every query 50 ms late: do OPTIONS keep their latency, and how many
authenticated REGISTERs does one worker take?

    python -m bench.db_wait [--backend postgres|redis] [--delay 0.05] [--calls 3000]
                            [--rate 300] [--blocking] [--seconds-probe 0.01] [--max-conns 64]
                            [--driver loop|thread] [--profile FILE] [--own-server]

One ksr worker (usrloc db_mode 3 and auth_db on the backend, both through a TCP proxy in this
process that delays every answer by --delay) runs a script doing auth_check + save for
REGISTER and answers OPTIONS with 200. sipp plays REGISTER -> 401 -> REGISTER+auth -> 200 at
--rate over distinct AORs while a prober sends one OPTIONS every --seconds-probe to the same
worker and times each answer. Prints the achieved REGISTER rate (zero failures wanted), ksr's
CPU per registration, and the OPTIONS latency percentiles.

--blocking runs the database calls in the worker's own thread (db_url offload=0): the way ksr
worked before routes could wait, for comparison. --driver picks PostgreSQL's db_url driver (the
event loop's pipelined connections, or a thread pool); --profile records ksr with py-spy (raw
folded stacks) during the measured run. The probes slower than 5 ms are listed with the time
they were sent, to tell a start-up spike from a steady one.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import cpu_seconds
from tests import services
from tests.registrar.conftest import _cleanup
from tests.registrar.procs import SCENARIO, add_users
from tests.support import free_port, ksr_process, run_sipp
from tests.suspend.dbproxy import DbProxy, address_of, url_via

SCRIPT = """
function ksr_request_route()
  if KSR.is_REGISTER() then
    if KSR.auth_db.auth_check(KSR.pv.get("$td"), "subscriber", 0) < 0 then
      KSR.auth.auth_challenge(KSR.pv.get("$td"), 1)
      KSR.x.exit()
    end
    KSR.registrar.save("location", 0)
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(200, "OK")
end
"""


PROBE = r"""
import socket, sys, time
port, interval, out = int(sys.argv[1]), float(sys.argv[2]), open(sys.argv[3], "w", buffering=1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(1.0)
me = s.getsockname()[1]
n = 0
while True:
    n += 1
    msg = (
        f"OPTIONS sip:ksr@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-p{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\n"
        f"To: <sip:ksr@127.0.0.1>\r\nCall-ID: probe-{n}\r\nCSeq: {n} OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    )
    t0 = time.perf_counter()
    s.sendto(msg.encode(), ("127.0.0.1", port))
    try:
        while f"probe-{n}\r".encode() not in s.recv(65536):
            pass
        out.write(f"{t0} {time.perf_counter() - t0}\n")
    except TimeoutError:
        out.write(f"{t0} lost\n")
    time.sleep(interval)
"""


class Prober:
    """One OPTIONS every ``interval`` seconds, sent from a process of its own (in the bench
    process the proxy's thread would hold the interpreter lock while an answer waits); the
    round-trip time of each answer."""

    def __init__(self, port: int, interval: float) -> None:
        self.port = port
        self.interval = interval
        self.rtts: list[float] = []
        self.when: list[float] = []  # when each answered probe was sent (perf_counter)
        self.lost = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._out = Path(tempfile.mkstemp(prefix="ksr-probe-")[1])

    def __enter__(self) -> Prober:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._out.unlink(missing_ok=True)

    def start(self) -> None:
        """Start probing afresh (what an earlier run measured is dropped)."""
        self.stop()
        self.rtts, self.when, self.lost = [], [], 0
        self._proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(self.port), str(self.interval), str(self._out)]
        )

    def stop(self) -> None:
        """Stop probing and read what was measured."""
        if self._proc is None:
            return
        self._proc.terminate()
        self._proc.wait(5)
        self._proc = None
        for line in self._out.read_text().splitlines():
            t0, _, rtt = line.partition(" ")
            if rtt == "lost":
                self.lost += 1
            elif rtt:
                self.when.append(float(t0))
                self.rtts.append(float(rtt))

    def slow(self, above: float = 0.005) -> str:
        """When the probes slower than ``above`` were sent (seconds since the first)."""
        if not self.when:
            return ""
        t0 = self.when[0]
        late = [
            f"{w - t0:.1f}s:{r * 1000:.0f}ms"
            for w, r in zip(self.when, self.rtts, strict=True)
            if r > above
        ]
        return " ".join(late[:40])

    def report(self) -> str:
        if not self.rtts:
            return f"OPTIONS: no answer ({self.lost} lost)"
        r = sorted(self.rtts)
        p = lambda q: r[min(len(r) - 1, int(q * len(r)))] * 1000  # noqa: E731
        return (
            f"OPTIONS latency over {len(r)} probes: p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms, "
            f"max {r[-1] * 1000:.1f} ms, mean {statistics.mean(r) * 1000:.2f} ms, lost {self.lost}"
        )


def run(
    backend: str,
    delay: float,
    calls: int,
    rate: int,
    blocking: bool,
    probe: float,
    max_conns: int = 64,
    profile: str = "",
    driver: str = "",
    own_server: bool = False,
) -> int:
    with contextlib.ExitStack() as stack:
        if own_server:  # a throwaway server of this run's own: no other clients on it
            own = services.private_postgres() if backend == "postgres" else services.private_redis()
            base = stack.enter_context(own)[0]
        else:
            base = services.pg_url() if backend == "postgres" else services.redis_url()
        return _run(base, backend, delay, calls, rate, blocking, probe, max_conns, profile, driver)


def _run(
    base: str,
    backend: str,
    delay: float,
    calls: int,
    rate: int,
    blocking: bool,
    probe: float,
    max_conns: int,
    profile: str,
    driver: str,
) -> int:
    prefix = "b" + uuid.uuid4().hex[:8] + "_"
    with tempfile.TemporaryDirectory(prefix="ksr-bench-") as d, DbProxy(address_of(base)) as proxy:
        tmp = Path(d)
        add_users(f"{base}?prefix={prefix}", 1)  # u00000 / pw0, written directly
        url = url_via(base, proxy.port) + f"?prefix={prefix}"
        url += "&offload=0" if blocking else f"&max_conns={max_conns}&query_timeout=5"
        url += f"&driver={driver}" if driver else ""
        proxy.delay = delay
        csv = tmp / "aors.csv"
        csv.write_text(
            "SEQUENTIAL\n" + "".join(f"bench{i:06d};127.0.0.1;x\n" for i in range(calls))
        )
        script = tmp / "bench.lua"
        script.write_text(SCRIPT)
        cfg = (
            'loadmodule = ["sl", "usrloc", "registrar", "auth", "auth_db"]\n'
            f'[modparam.usrloc]\ndb_url = "{url}"\ndb_mode = 3\n'
            f'[modparam.auth_db]\ndb_url = "{url}"\n'
        )
        try:
            with ksr_process(script, cfg) as k:
                # warm up: the tables are created and connections opened before timing
                run_sipp(
                    [
                        "-sf",
                        str(SCENARIO),
                        "-inf",
                        str(csv),
                        f"127.0.0.1:{k['port']}",
                        "-i",
                        "127.0.0.1",
                        "-p",
                        str(free_port()),
                        "-m",
                        "20",
                        "-r",
                        "20",
                        "-au",
                        "u00000",
                        "-ap",
                        "pw0",
                    ],
                    timeout=60,
                )
                with Prober(k["port"], probe) as prober:
                    time.sleep(1.5)
                    prober.stop()
                    idle = prober.report()
                    prober.start()
                    time.sleep(0.3)  # the probing process is running
                    spy = (
                        subprocess.Popen(
                            [
                                str(Path(sys.executable).with_name("py-spy")),
                                "record",
                                "-p",
                                str(k["proc"].pid),
                                "-f",
                                "raw",
                                "-o",
                                profile,
                                "-r",
                                "200",
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                        if profile
                        else None
                    )
                    cpu0 = cpu_seconds(k["proc"].pid)
                    t0 = time.monotonic()
                    res = run_sipp(
                        [
                            "-sf",
                            str(SCENARIO),
                            "-inf",
                            str(csv),
                            f"127.0.0.1:{k['port']}",
                            "-i",
                            "127.0.0.1",
                            "-p",
                            str(free_port()),
                            "-m",
                            str(calls),
                            "-r",
                            str(rate),
                            "-l",
                            "2000",
                            "-au",
                            "u00000",
                            "-ap",
                            "pw0",
                            "-recv_timeout",
                            "10000",
                        ],
                        timeout=600,
                    )
                    elapsed = time.monotonic() - t0
                    cpu = cpu_seconds(k["proc"].pid) - cpu0
                    prober.stop()
                    loaded = prober.report()
                    slow = prober.slow()
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        spy.wait(30)
                problems = [
                    line
                    for line in Path(k["log"]).read_text(errors="replace").splitlines()
                    if " ERROR " in line or " WARNING " in line or "Traceback" in line
                ]
        finally:
            _cleanup(base, prefix)
    ok = fail = 0
    for line in res.stdout.splitlines():
        if line.strip().startswith("Successful call"):
            ok = int(line.split("|")[2])
        if line.strip().startswith("Failed call"):
            fail = int(line.split("|")[2])
    if fail:  # where sipp's calls failed: its scenario table (messages, retransmissions,
        # timeouts, unexpected messages per step)
        for line in res.stdout.splitlines():
            if "REGISTER" in line or "<----" in line or "Unexp" in line:
                print("  sipp: " + line.strip())
    mode = "blocking (offload=0)" if blocking else "suspending routes"
    print(f"{backend}, every answer {delay * 1000:.0f} ms late, {mode}")
    print(f"  idle   {idle}")
    print(
        f"  REGISTER with digest auth: {ok / elapsed:.1f}/s achieved at {rate}/s offered "
        f"({ok} ok, {fail} failed, {elapsed:.1f} s), ksr CPU {cpu / max(ok, 1) * 1e6:.0f} us each"
    )
    print(f"  during {loaded}")
    if slow:
        print(f"  probes above 5 ms (sent at: rtt): {slow}")
    if problems:
        kinds: dict[str, int] = {}
        for line in problems:
            kind = re.sub(r"[0-9]+", "N", line.split(" ", 3)[-1])[:160]
            kinds[kind] = kinds.get(kind, 0) + 1
        print(f"  ksr logged {len(problems)} errors/warnings:")
        for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:6]:
            print(f"    {n:6d} x {kind}")
    return 1 if fail else 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backend", default="postgres", choices=["postgres", "redis"])
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rate", type=int, default=300)
    ap.add_argument("--blocking", action="store_true")
    ap.add_argument("--seconds-probe", type=float, default=0.01)
    ap.add_argument("--max-conns", type=int, default=64, help="db_url max_conns")
    ap.add_argument(
        "--driver", default="", choices=["", "loop", "thread"], help="db_url driver (PostgreSQL)"
    )
    ap.add_argument("--profile", default="", help="py-spy raw samples of ksr into this file")
    ap.add_argument(
        "--own-server", action="store_true", help="a throwaway database of this run's own"
    )
    a = ap.parse_args()
    return run(
        a.backend,
        a.delay,
        a.calls,
        a.rate,
        a.blocking,
        a.seconds_probe,
        a.max_conns,
        a.profile,
        a.driver,
        a.own_server,
    )


if __name__ == "__main__":
    sys.exit(main())
