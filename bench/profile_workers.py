"""What the hand-off between worker processes costs, without the machine's noise: two workers
in one process.

Two complete ``Server`` objects (worker 0 and worker 1 of ``ksr run -n 2``) run in one trio
loop, each with its real hand-off socket and shared-table connections (unix sockets in a run
folder, as ``ksr run -n 2`` makes them), and play the anchor's calls (bench.profile_calls):
the caller's requests arrive at one worker and the callee's replies at the other, as when the
kernel's SO_REUSEPORT hash puts the two peers on different workers, so every call owned by the
other worker crosses a socket (the caller's INVITE, ACK and BYE), and so do the replies of the
calls the caller's worker owns. The same calls through one ``Server`` without a hand-off give
the ``-n 1`` figure. One thread, one core: the difference is the work the hand-off adds (the
socket calls, the wake-ups of the receiving loop, encoding and decoding), not the cost of four
busy processes on two shared cores.

``--steer``: every message arrives at the worker owning its call instead, as the kernel's
steering program delivers them (ksr/transport/steer.py): nothing crosses a socket.

``--what reg``: the anchor's REGISTERs instead (sipp's reg.xml: a new Call-ID and user each),
each at the worker the kernel steers its Call-ID to, one per batch (what a worker sees at
1,000/s): each worker saves its own and applies its sibling's writes (the cost of sharing).

    python -m bench.profile_workers [--calls 3000] [--script anchor|calls] [--steer] [--profile]
    python -m bench.profile_workers --what reg [--calls 3000] [--workers 1|2]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
from pathlib import Path
from typing import Any

import trio
import trio.testing

from ksr.core.gcpolicy import tune_for_serving
from ksr.core.handoff import Handoff
from ksr.core.server import Server
from ksr.sip.owner import call_id_owner, message_owner

from .anchor_inproc import anchor_setup, register_user
from .calls import CONFIG, SCRIPT
from .inproc import PROXY, GcMeter, Wire, cpu_now, make_server, profiled, reply_to, report
from .profile_calls import CALLEE, CALLER, SDP, in_dialog, invite

CALLS_PER_SECOND = 1000
REG_UA = ("127.0.0.1", 5088)


class Pair:
    """The servers messages arrive at: ``caller_side`` takes the caller's, ``callee_side``
    the callee's (the same server with one worker)."""

    def __init__(self, servers: list[tuple[Server, Wire, Any]], steer: bool = False) -> None:
        self.servers = servers
        self.caller_side = servers[0]
        self.callee_side = servers[-1]
        self.steer = steer and len(servers) > 1

    def sides(self, invite: bytes) -> tuple[tuple[Server, Wire, Any], tuple[Server, Wire, Any]]:
        """The workers the caller's and the callee's messages of this call arrive at. Steered:
        its owner (every message of the call carries its Call-ID; read once per call here,
        since the kernel reads it in ksr's place)."""
        if self.steer:
            owner = message_owner(invite, len(self.servers))
            if owner is not None:
                return self.servers[owner], self.servers[owner]
        return self.caller_side, self.callee_side

    def take(self, port: int) -> list[bytes]:
        out: list[bytes] = []
        for _, wire, _ in self.servers:
            out += wire.take(port)
        return out

    async def wait(self, port: int, n: int) -> list[bytes]:
        """The next ``n`` messages sent to ``port`` by any worker (handed-off messages are
        handled when the receiving worker's loop runs)."""
        got: list[bytes] = []
        for _ in range(10_000):
            got += self.take(port)
            if len(got) >= n:
                return got
            await trio.sleep(0)
        raise RuntimeError(f"expected {n} messages to port {port}, got {[g[:40] for g in got]}")


async def play_call(pair: Pair, n: int) -> None:
    a, b = pair.sides(invite(n))

    def from_caller(data: bytes) -> None:
        if a[0].sync_shared is not None:
            a[0].sync_shared()  # as the UDP transport does before each batch
        a[0].receive(data, CALLER[0], CALLER[1], a[2])

    def from_callee(data: bytes) -> None:
        if b[0].sync_shared is not None:
            b[0].sync_shared()
        b[0].receive(data, CALLEE[0], CALLEE[1], b[2])

    contact = f"Contact: <sip:{CALLEE[0]}:{CALLEE[1]};transport=UDP>"
    tag = f"{n}SIPpTag01"
    from_caller(invite(n))
    fwd = (await pair.wait(CALLEE[1], 1))[0]
    from_callee(reply_to(fwd, 180, "Ringing", tag, contact))
    from_callee(reply_to(fwd, 200, "OK", tag, contact, SDP))
    up = await pair.wait(CALLER[1], 3)
    if sorted(m[8:11] for m in up) != [b"100", b"180", b"200"]:
        raise RuntimeError(f"caller got {[m[:12] for m in up]}")
    relayed_ok = next(m for m in up if m[8:11] == b"200")
    from_caller(in_dialog("ACK", 1, n, relayed_ok))
    await pair.wait(CALLEE[1], 1)
    from_caller(in_dialog("BYE", 3, n, relayed_ok))
    bye = (await pair.wait(CALLEE[1], 1))[0]
    from_callee(reply_to(bye, 200, "OK"))
    ok = await pair.wait(CALLER[1], 1)
    if ok[0][8:11] != b"200":
        raise RuntimeError("BYE not answered")


def reg_message(n: int) -> bytes:
    """Registration ``n`` as sipp's reg.xml sends it (a new Call-ID, one of 10,000 users)."""
    user = f"user{n % 10_000:05d}"
    return (
        f"REGISTER sip:{PROXY[0]}:{PROXY[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {REG_UA[0]}:{REG_UA[1]};branch=z9hG4bK-{n}-1\r\n"
        f"From: <sip:{user}@{PROXY[0]}>;tag=4242SIPpRegTag{n}\r\nTo: <sip:{user}@{PROXY[0]}>\r\n"
        f"Call-ID: {n}-4242@127.0.0.1\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:{user}@127.0.0.1:{20000 + n % 10_000}>\r\nExpires: 3600\r\n"
        "Max-Forwards: 70\r\nUser-Agent: sipp-anchor\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def play_register(pair: Pair, n: int) -> None:
    """One REGISTER at its owner, as one UDP batch (the shared-table check first), then a
    turn of the event loop (a wake-up of the real process)."""
    msg = reg_message(n)
    server, wire, sock = pair.servers[call_id_owner(f"{n}-4242@127.0.0.1", len(pair.servers))]
    if server.sync_shared is not None:
        server.sync_shared()
    server.receive(msg, REG_UA[0], REG_UA[1], sock)
    got = wire.take(REG_UA[1])
    if len(got) != 1 or got[0][8:11] != b"200":
        raise RuntimeError(f"REGISTER {n}: {[g[:40] for g in got]}")
    await trio.sleep(0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2, help="1: the same calls without a hand-off")
    ap.add_argument("--script", choices=("calls", "anchor"), default="anchor")
    ap.add_argument("--steer", action="store_true", help="messages arrive at their owner")
    ap.add_argument("--what", choices=("calls", "reg"), default="calls")
    ap.add_argument(
        "--no-replication",
        action="store_true",
        help="workers send each other no shared-table writes (what two workers cost without sharing)",
    )
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ksr-profw-"))
    if args.what == "reg":
        args.steer, args.script = True, "anchor"  # REGISTERs stay where the kernel put them
    if args.script == "calls":
        script = tmp / "calls.lua"
        script.write_text(SCRIPT % CALLEE[1])
        config: dict[str, Any] = {"loadmodule": ["sl", "tm", "tmx", "rr"]}
        assert CONFIG.strip() == 'loadmodule = ["sl", "tm", "tmx", "rr"]'
    else:
        script, config = anchor_setup(tmp)
    rundir = tmp / "run"
    rundir.mkdir()
    servers = []
    for i in range(args.workers):
        server, wire, sock = make_server(script, config)
        if args.workers > 1:
            server.worker_id = i
            server.handoff = Handoff(server, i, args.workers, str(rundir))
            if args.no_replication:
                server.shared.active = False  # writes stay in the worker that made them
        servers.append((server, wire, sock))
    tune_for_serving(servers[0][0].config.core.gc_threshold)
    pair = Pair(servers, args.steer)

    clock = trio.testing.MockClock(autojump_threshold=0)  # idle waits (start-up) pass at once

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            for server, _, _ in servers:
                server.nursery = nursery
                server.runner.nursery = nursery
                await nursery.start(server.timers.run)
                if server.handoff is not None:
                    await nursery.start(server.handoff.serve)
                for m in server.modules.values():
                    await m.start(nursery)
                if server.handoff is not None:
                    server.handoff.ready.set()
            if args.script == "anchor":
                s, wire, sock = pair.caller_side
                register_user(s, wire, sock, "bob", CALLEE)
                for _ in range(3):  # the other worker applies the binding
                    clock.jump(0.1)
                    await trio.sleep(0)
            step = 1.0 / CALLS_PER_SECOND
            play, what = (
                (play_register, "registrations") if args.what == "reg" else (play_call, "calls")
            )
            for i in range(args.warmup):
                await play(pair, i)
                clock.jump(step)
            t0 = cpu_now()
            t0_os = os.times()
            with profiled(args.profile, args.top, args.sort), GcMeter() as meter:
                for i in range(args.warmup, args.warmup + args.calls):
                    await play(pair, i)
                    clock.jump(step)
            report(what, args.calls, cpu_now() - t0)
            t1_os = os.times()
            user, system = t1_os.user - t0_os.user, t1_os.system - t0_os.system
            print(
                f"of which user {user / args.calls * 1e6:.1f} us, system {system / args.calls * 1e6:.1f} us"
            )
            print(
                f"of which garbage collection: {meter.seconds / args.calls * 1e6:.1f} us per {what[:-1]} ({meter.runs} collections, {gc.get_threshold()})"
            )
            for server, _, _ in servers:
                h = server.handoff
                if h is not None:
                    print(f"worker {h.index}: relayed {h.c_out.value}, received {h.c_in.value}")
            nursery.cancel_scope.cancel()

    trio.run(run, clock=clock)


if __name__ == "__main__":
    main()
