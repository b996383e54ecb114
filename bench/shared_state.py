"""What sharing the tables between worker processes costs (docs/workers.md, shared tables).

    python -m bench.shared_state [--micro-only] [--registers 3000] [--rate 400] [--repeat 2]

1. In-process microbenchmarks (CPU time, no sipp): a usrloc write (``Domain.put``) alone and
   with replication on (the write encoded and sent over a real unix SEQPACKET socket), the
   sibling's cost to read and apply one write, a lookup (``Domain.get``: the same in every
   mode, local memory), and the per-batch check a worker makes when nothing is pending.
2. sipp: REGISTER -> 200 (usrloc db_mode 0, no auth) against ``ksr run -n 1`` and ``-n 2``,
   CPU of the whole process tree (supervisor + workers) per registration, at a fixed rate.
   sipp sends from one port, so with -n 2 one worker receives everything and hands half of
   the REGISTERs to the other (their Call-IDs belong to it); every REGISTER's binding is then
   replicated to the other worker.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.anchor import tree_cpu
from bench.common import sipp
from bench.register import NO_AUTH_SCENARIO, SCRIPT_NO_AUTH
from ksr.core.replica_link import WriteCounts
from ksr.core.replication import Replicator
from ksr.modules.usrloc.contact import Contact
from ksr.modules.usrloc.domain import Domain
from tests.support import free_port, ksr_process


def _per_op(fn: Callable[[int], None], n: int) -> float:
    """CPU microseconds per operation (best of 3)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        fn(n)
        best = min(best, time.process_time() - t0)
    return best / n * 1e6


def micro(n: int = 20_000) -> dict[str, float]:
    contacts = [
        Contact(f"user{i}", f"sip:user{i}@192.0.2.{i % 250}:5060", time.time() + 3600, ruid=f"r{i}")
        for i in range(1000)
    ]
    plain = Domain("location", 0, None)

    def put_plain(k: int) -> None:
        for i in range(k):
            plain.put(contacts[i % 1000])

    writer, reader = Domain("location", 0, None), Domain("location", 0, None)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rw, rr = Replicator(), Replicator()
    rw.register("usrloc:location", writer)
    rr.register("usrloc:location", reader)
    rw.broadcast = a.send
    rw.activate(0, 1)
    rr.activate(1, 2)
    rr.finish_restore()
    b.setblocking(False)
    batch = 2000  # frames written before the reader drains them (fits the socket buffer)

    def drain() -> None:
        while True:
            try:
                data = b.recv(1 << 16)
            except BlockingIOError:
                return
            rr.receive(data)

    def put_replicated(k: int) -> None:
        for i in range(k):
            writer.put(contacts[i % 1000])
            if i % batch == batch - 1:
                t = time.process_time()
                drain()
                put_replicated.reader += time.process_time() - t  # type: ignore[attr-defined]
        drain()

    put_replicated.reader = 0.0  # type: ignore[attr-defined]
    out = {"put, one process": _per_op(put_plain, n)}
    total = _per_op(put_replicated, n)
    reader_us = put_replicated.reader / (3 * n) * 1e6  # type: ignore[attr-defined]
    out["put + replicate, writer side"] = total - reader_us
    out["apply one write, sibling side"] = reader_us
    assert reader.mem.keys() == writer.mem.keys()

    def lookup(k: int) -> None:
        for i in range(k):
            reader.get(f"user{i % 1000}")

    out["lookup (Domain.get), any worker"] = _per_op(lookup, n)
    counts = WriteCounts(os.path.join(tempfile.mkdtemp(prefix="ksr-bench-"), "writes"), 2)

    def idle(k: int) -> None:  # what ReplicaLink.drain looks at before it would poll()
        for _ in range(k):
            if counts.others(1) != -1:
                pass

    out["per-batch check, nothing pending"] = _per_op(idle, n)
    return out


def register_cpu(children: int, calls: int, rate: int, tmp: Path) -> tuple[float, int, int]:
    """(ksr CPU us per REGISTER over the process tree, ok, failed)."""
    script = tmp / "reg.lua"
    script.write_text(SCRIPT_NO_AUTH)
    csv = tmp / "aors.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"u{i:06d};127.0.0.1;x\n" for i in range(calls)))
    cfg = 'loadmodule = ["sl", "usrloc", "registrar"]\n[modparam.usrloc]\ndb_mode = 0\n'
    extra = ["-n", str(children)]
    with ksr_process(script, cfg, extra_args=extra) as k:
        log = k["log"]
        deadline = time.monotonic() + 20
        while children > 1 and log.read_text().count("listening on") < children:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(0.5)
        cpu0 = tree_cpu(k["proc"].pid)
        ok, failed, _ = sipp(
            [
                "-sf",
                str(NO_AUTH_SCENARIO),
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
                "200",
                "-recv_timeout",
                "5000",
            ]
        )
        cpu = tree_cpu(k["proc"].pid) - cpu0
    return cpu / max(ok, 1) * 1e6, ok, failed


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--micro-only", action="store_true")
    ap.add_argument("--registers", type=int, default=3000)
    ap.add_argument("--rate", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=2, help="sipp runs per worker count")
    a = ap.parse_args()
    for name, us in micro().items():
        print(f"{name:36s} {us:7.2f} us")
    if a.micro_only:
        return 0
    if subprocess.run(["which", "sipp"], capture_output=True).returncode != 0:
        print("sipp not installed", file=sys.stderr)
        return 1
    failed_any = 0
    results: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="ksr-bench-") as d:
        for _ in range(a.repeat):
            for n in (1, 2):  # interleaved: the machine's load drifts
                us, ok, failed = register_cpu(n, a.registers, a.rate, Path(d))
                results[n].append(us)
                failed_any += failed
                print(f"-n {n}: {us:6.0f} us CPU per REGISTER (ok={ok} failed={failed})")
    one, two = statistics.median(results[1]), statistics.median(results[2])
    print(f"median -n 1 {one:.0f} us, median -n 2 {two:.0f} us: ratio {two / one:.2f}")
    return 1 if failed_any else 0


if __name__ == "__main__":
    sys.exit(main())
