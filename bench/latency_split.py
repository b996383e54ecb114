"""Where one request's time goes at a low rate: REGISTER→200 and INVITE→200 of the anchor,
split in parts.

bench.anchor's latency probe (bench/latency_probe.py: one request at a time, 100/s) runs
against each server in turn, interleaved, a fresh process each:

- ``kamailio`` and ``ksr`` (``ksr run -n --children``): as bench.anchor starts them;
- ``split``: the same ksr worker (``-n 1``) in a process of this bench, taking time stamps: the
  kernel's arrival stamp of each datagram (SO_TIMESTAMPNS), trio's return from its I/O wait (an
  Instrument), the read, the start and end of ``Server.receive`` and each ``sendto``;
- ``echo-block`` / ``echo-trio`` (REGISTER only): a Python process answering every datagram
  with a fixed reply, reading with a blocking ``recvfrom`` (Kamailio's way) or as ksr's UDP loop
  does (trio ``wait_readable``, ``recvmsg``, ``recvfrom`` until EAGAIN): the floor of a Python
  server, and of trio's wake-up, on this machine.

    python -m bench.latency_split [--what reg,invite] [--count 500] [--rate 100] [--repeat 3]
                                  [--servers kamailio,ksr,split,echo-block,echo-trio]

Prints p50/p99 of the round trip per server and repeat, and for ``split`` the medians of the
parts (µs): REGISTER ``wake`` (arrival to trio's return from epoll_wait), ``sched`` (to the
UDP task's read), ``read`` (to ``Server.receive``), ``route`` (to the reply's sendto),
``after`` (the rest of ``receive``); INVITE ``inv_wake`` (arrival to the read), ``inv_100``
(read to the sendto of the 100 Trying), ``inv_relay`` (read to the sendto of the INVITE to the
callee), ``inv_after`` (that sendto to the end of
``receive``), ``ok_wait`` (the callee's 200 arrived while ksr was still busy: how long it
waited), ``ok_wake`` (its arrival to its read), ``ok_relay`` (read to the relayed 200's
sendto). Only the first datagram of a wake-up has the kernel's arrival stamp: a 200 that came
while the INVITE's route ran is read right after it, without one, and counts in ``ok_relay``
only (from the start of its ``Server.receive``). Timings only; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from .anchor import Bench, Server, _serve, percentile
from .common import free_port
from .latency_probe import invite_latency, register_latency

REG_PARTS = ("wake", "sched", "read", "route", "after")
INV_PARTS = ("inv_wake", "inv_100", "inv_relay", "inv_after", "ok_wait", "ok_wake", "ok_relay")


# -- the servers this bench runs in its own subprocesses --------------------------------------


def echo(port: int, mode: str) -> None:
    """Answer every datagram with '200 OK' and the request's headers (the probe looks for its
    Call-ID and CSeq), blocking or trio's way."""

    def answer(data: bytes) -> bytes:
        return b"SIP/2.0 200 OK" + data[data.index(b"\r\n") :]

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    if mode == "block":
        while True:
            data, addr = s.recvfrom(65535)
            s.sendto(answer(data), addr)

    import trio

    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS, as ksr reads it

    async def first_at_once() -> None:  # ``trio1``: the first datagram answered before reading on
        while True:
            await trio.lowlevel.wait_readable(s)
            data, _, _, addr = s.recvmsg(65535, socket.CMSG_SPACE(16))
            s.sendto(answer(data), addr)
            while True:
                try:
                    data, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                s.sendto(answer(data), addr)

    if mode == "trio1":
        trio.run(first_at_once)

    async def loop() -> None:
        while True:
            await trio.lowlevel.wait_readable(s)
            first = True
            while True:
                try:
                    if first:
                        data, _, _, addr = s.recvmsg(65535, socket.CMSG_SPACE(16))
                        first = False
                    else:
                        data, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                s.sendto(answer(data), addr)

    trio.run(loop)


def serve_split(port: int, out: Path) -> None:
    """The anchor's ksr worker (``-n 1``) taking time stamps: one record per message,
    [first bytes, source port, arrival, io, read, in, [(port, sent)...], done], times in
    perf_counter ns."""
    import trio

    import ksr.transport.udp as udp
    from ksr.core.config import Config
    from ksr.core.gcpolicy import tune_for_serving
    from ksr.core.server import Server as KsrServer

    from .anchor_inproc import anchor_setup

    tmp = Path(tempfile.mkdtemp(prefix="ksr-split-"))
    script, config = anchor_setup(tmp)
    config["core"]["listen"] = [f"udp:127.0.0.1:{port}"]
    config["core"]["debug"] = 0
    server = KsrServer(Config.model_validate(config), script)
    server.load_script()
    now = time.perf_counter_ns
    cur: dict[str, Any] = {"io": 0, "read": 0, "age": 0.0, "sends": []}
    records: list[list[Any]] = []

    class Woke(trio.abc.Instrument):
        def after_io_wait(self, timeout: float) -> None:
            cur["io"] = now()

    real_age = udp.queue_age

    def queue_age(ancdata: Any, now_: Any = time.time) -> float:
        cur["read"] = now()
        cur["stamped"] = True
        age = cur["age"] = real_age(ancdata, now_)
        return age

    udp.queue_age = queue_age  # type: ignore[assignment]
    real_receive = server.receive

    def receive(data: bytes, src_ip: str, src_port: int, sock: Any, conn_id: int = 0) -> None:
        start = now()
        # read with the kernel's stamp (the first datagram of a wake-up), or in the drain
        # after it: then its arrival is not known, and its read is taken as its start
        stamped = cur.pop("stamped", False)
        sends = cur["sends"] = []
        real_receive(data, src_ip, src_port, sock, conn_id)
        read = cur["read"] if stamped else start
        arrival = read - int(cur["age"] * 1e9) if stamped else 0
        head = data[:12].decode(errors="replace")
        records.append([head, src_port, arrival, cur["io"], read, start, sends, now(), stamped])

    server.receive = receive
    real_send = udp.UdpTransport.send

    def send(self: Any, data: bytes, host: str, p: int, sock: Any = None, conn_id: int = 0) -> bool:
        ok = real_send(self, data, host, p, sock, conn_id)
        cur["sends"].append((p, now()))
        return ok

    udp.UdpTransport.send = send  # type: ignore[method-assign,assignment]
    tune_for_serving(server.config.core.gc_threshold)

    async def main() -> None:
        trio.lowlevel.add_instrument(Woke())
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

    trio.run(main)
    out.write_text(json.dumps(records))


def register_parts(records: list[list[Any]]) -> list[float]:
    recs = [r for r in records if r[0].startswith("REGISTER") and r[6] and r[8] and r[3] > r[2]]
    cols: list[list[float]] = [[] for _ in REG_PARTS]
    for _, _, arrival, io, read, start, sends, done, _ in recs:
        sent = sends[0][1]
        for i, v in enumerate((io - arrival, read - io, start - read, sent - start, done - sent)):
            cols[i].append(v / 1e3)
    return [statistics.median(c) if c else 0.0 for c in cols]


def invite_parts(records: list[list[Any]]) -> list[float]:
    cols: list[list[float]] = [[] for _ in INV_PARTS]
    for a, b in zip(records, records[1:], strict=False):
        if not (a[0].startswith("INVITE") and b[0].startswith("SIP/2.0 200")):
            continue
        up = [t for port, t in a[6] if port == a[1]]  # the 100 Trying, to the caller
        down = [t for port, t in a[6] if port != a[1]]  # the INVITE, to the callee
        if not (up and down and b[6]):
            continue
        if not a[8]:
            continue
        _, _, arrival, _, read, _, _, done, _ = a
        vals: tuple[int | None, ...] = (
            read - arrival,
            up[0] - read,
            down[0] - read,
            done - down[0],
            # the 200 read in the drain after the INVITE's route: it came during the route,
            # its arrival is not known
            max(0, done - b[2]) if b[8] else None,
            b[4] - b[2] if b[8] else None,
            b[6][0][1] - b[4],
        )
        for i, v in enumerate(vals):
            if v is not None:
                cols[i].append(v / 1e3)
    return [statistics.median(c) if c else 0.0 for c in cols]


# -- the bench -------------------------------------------------------------------------------


@contextmanager
def own_process(rundir: Path, *args: str) -> Iterator[Server]:
    port = free_port()
    log = rundir / f"own-{port}.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.latency_split", *args, "--port", str(port)],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    yield from _serve(args[0], proc, port, log)


class SplitBench(Bench):
    """bench.anchor's servers, plus this bench's own (``split``, ``echo-*``)."""

    out: Path

    def server(self, which: str, calls: bool) -> AbstractContextManager[Server]:
        if which == "split":
            return own_process(self.rundir, "split", "--out", str(self.out))
        if which.startswith("echo-"):
            return own_process(self.rundir, "echo", "--mode", which.split("-")[1])
        if which == "ksr":
            which = f"ksr-n{self.args.children}"
        return super().server(which, calls)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("role", nargs="?", default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="block", help=argparse.SUPPRESS)
    ap.add_argument("--what", default="reg,invite")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--children", type=int, default=1, help="workers of the 'ksr' server")
    ap.add_argument("--servers", default="kamailio,ksr,split,echo-block,echo-trio")
    ap.add_argument(
        "--inproc", type=int, default=0, help="instead: N calls and REGISTERs in one process"
    )
    args = ap.parse_args()
    if args.inproc:
        for name, us in inproc(args.inproc).items():
            print(f"  {name:<10} {us:7.1f} us")
        return
    if args.role == "echo":
        echo(args.port, args.mode)
        return
    if args.role == "split":
        serve_split(args.port, Path(args.out))
        return
    args.engine, args.ksr_base = "lua", ""
    bench = SplitBench(args)
    servers = args.servers.split(",")
    print(f"load average {os.getloadavg()}", flush=True)
    for what in args.what.split(","):
        names = [s for s in servers if what == "reg" or not s.startswith("echo-")]
        rtt: dict[str, list[float]] = {s: [] for s in names}
        p99s: dict[str, list[float]] = {s: [] for s in names}
        parts_names = REG_PARTS if what == "reg" else INV_PARTS
        parts: list[list[float]] = [[] for _ in parts_names]
        for rep in range(args.repeat):
            for which in names:
                bench.out = bench.rundir / f"split-{what}-{rep}.json"
                if what == "reg":
                    with bench.server(which, calls=False) as srv:
                        samples = register_latency(srv.port, args.count, args.rate)
                else:
                    with bench.callee_side(which, "uas-latency.xml", args.count / args.rate) as (
                        srv,
                        _,
                    ):
                        samples = invite_latency(srv.port, "callee000", args.count, args.rate)
                p50, p99 = percentile(samples, 50), percentile(samples, 99)
                rtt[which].append(p50)
                p99s[which].append(p99)
                line = f"  {what} {which:<11} rep {rep}: {len(samples)} ok, p50 {p50:6.0f} us, p99 {p99:6.0f} us"
                if which == "split" and bench.out.exists():
                    recs = json.loads(bench.out.read_text())
                    meds = register_parts(recs) if what == "reg" else invite_parts(recs)
                    for i, m in enumerate(meds):
                        parts[i].append(m)
                    line += " | " + ", ".join(
                        f"{n} {m:.0f}" for n, m in zip(parts_names, meds, strict=True)
                    )
                print(line, flush=True)
        print(f"{what}: medians over the repeats (p50 / p99 us), load average {os.getloadavg()}")
        for which in names:
            print(
                f"  {which:<11} {statistics.median(rtt[which]):6.0f} / {statistics.median(p99s[which]):6.0f}"
            )
        if parts[0]:
            print(
                "  split parts: "
                + ", ".join(
                    f"{n} {statistics.median(v):.0f}"
                    for n, v in zip(parts_names, parts, strict=True)
                ),
                flush=True,
            )


# -- the same parts warm, in one process (no sockets, no wake-ups): load-independent enough --------


def inproc(count: int) -> dict[str, float]:
    """Medians (µs) over ``count`` anchor calls and REGISTERs played through Server.receive:
    ``reg`` receive→200 sent, ``inv_100`` INVITE receive→100 sent, ``inv_relay`` →INVITE sent
    to the callee, ``inv_all`` the whole receive(), ``ok_relay`` callee's 200 receive→relayed."""
    import trio

    from ksr.core.gcpolicy import tune_for_serving

    from .anchor_inproc import anchor_setup, register_user
    from .inproc import SDP, Wire, make_server, reply_to, run_trio
    from .profile_calls import CALLEE, CALLER, in_dialog, invite

    tmp = Path(tempfile.mkdtemp(prefix="ksr-split-"))
    script, config = anchor_setup(tmp)
    server, wire, sock = make_server(script, config)
    tune_for_serving(server.config.core.gc_threshold)
    now = time.perf_counter_ns
    stamps: list[tuple[int, int]] = []

    class Stamped(Wire):
        def send(
            self, data: bytes, host: str, port: int, sock: Any = None, conn_id: int = 0
        ) -> bool:
            stamps.append((port, now()))
            return super().send(data, host, port, sock, conn_id)

    stamped = Stamped(sockets=wire.sockets)
    server.transports["udp"] = stamped
    cols: dict[str, list[float]] = {
        k: [] for k in ("reg", "inv_100", "inv_relay", "inv_all", "ok_relay")
    }
    rx = server.receive

    def register(n: int) -> None:
        user = f"u{n:06d}"
        msg = (
            f"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-r{n}\r\n"
            f"From: <sip:{user}@127.0.0.1>;tag=r{n}\r\nTo: <sip:{user}@127.0.0.1>\r\n"
            f"Call-ID: reg-{n}@bench\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{user}@127.0.0.1:5099>\r\nExpires: 3600\r\nMax-Forwards: 70\r\n"
            "User-Agent: sipp-anchor\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        stamps.clear()
        t0 = now()
        rx(msg, "127.0.0.1", 5099, sock)
        cols["reg"].append((stamps[0][1] - t0) / 1e3)
        stamped.take(5099)

    def call(n: int) -> None:
        contact = f"Contact: <sip:{CALLEE[0]}:{CALLEE[1]};transport=UDP>"
        stamps.clear()
        t0 = now()
        rx(invite(n), CALLER[0], CALLER[1], sock)
        t1 = now()
        up = [t for p, t in stamps if p == CALLER[1]]
        down = [t for p, t in stamps if p == CALLEE[1]]
        cols["inv_100"].append((up[0] - t0) / 1e3)
        cols["inv_relay"].append((down[0] - t0) / 1e3)
        cols["inv_all"].append((t1 - t0) / 1e3)
        fwd = stamped.take(CALLEE[1])[0]
        ok = reply_to(fwd, 200, "OK", f"{n}tag", contact, SDP)
        stamps.clear()
        t0 = now()
        rx(ok, CALLEE[0], CALLEE[1], sock)
        cols["ok_relay"].append((stamps[0][1] - t0) / 1e3)
        relayed = stamped.take(CALLER[1])[-1]
        rx(in_dialog("ACK", 1, n, relayed), CALLER[0], CALLER[1], sock)
        rx(in_dialog("BYE", 3, n, relayed), CALLER[0], CALLER[1], sock)
        bye = stamped.take(CALLEE[1])[-1]
        rx(reply_to(bye, 200, "OK"), CALLEE[0], CALLEE[1], sock)
        stamped.take(CALLER[1])

    async def body(clock: Any) -> None:
        register_user(server, stamped, sock, "bob", CALLEE)
        for i in range(count):
            register(i)
            call(i)
            clock.jump(0.01)
            await trio.sleep(0)

    run_trio(server, body)
    return {k: statistics.median(v[count // 10 :]) for k, v in cols.items()}


if __name__ == "__main__":
    main()
