"""Memory of one worker holding many registrations and dialogs: the anchor's script and
configuration in one process (no sockets), as a worker of ``ksr run -n N`` holds them.

Every worker keeps a full copy of the location table (docs/workers.md: shared tables), and
a dialog lives in the worker that owns its call, so one worker holding all the contacts and
all the dialogs is the largest a worker gets. The bench registers ``--contacts`` users (one
contact each, REGISTER through the script: ``registrar.save``), then sets up ``--dialogs``
calls to them (INVITE, 180, 200, ACK through the script: ``dlg_manage``, ``record_route``,
``lookup``, ``t_relay``; no BYE, so the dialogs stay confirmed), lets tm's wait timers free
the transactions, and prints the resident memory (VmRSS) after each step.

    python -m bench.memory [--contacts 100000] [--dialogs 10000]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import trio.testing

from ksr.core.gcpolicy import tune_for_serving

from .anchor_inproc import anchor_setup
from .inproc import PROXY, SDP, make_server, reply_to, run_trio
from .profile_calls import CALLEE, CALLER, in_dialog


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def register(user: str, n: int) -> bytes:
    return (
        f"REGISTER sip:{PROXY[0]}:{PROXY[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-reg-{n}\r\n"
        f"From: <sip:{user}@{PROXY[0]}>;tag=reg{n}\r\nTo: <sip:{user}@{PROXY[0]}>\r\n"
        f"Call-ID: reg-{n}@bench\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:{user}@{CALLEE[0]}:{CALLEE[1]}>\r\nExpires: 3600\r\nMax-Forwards: 70\r\n"
        "User-Agent: sipp-anchor\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def invite(user: str, n: int) -> bytes:
    return (
        f"INVITE sip:{user}@{PROXY[0]}:{PROXY[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-{n}-1\r\n"
        f"From: sipp <sip:sipp@{CALLER[0]}:{CALLER[1]}>;tag={n}SIPpTag001\r\n"
        f"To: <sip:{user}@{PROXY[0]}:{PROXY[1]}>\r\n"
        f"Call-ID: {n}-bench@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: sip:sipp@{CALLER[0]}:{CALLER[1]};transport=UDP\r\nMax-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
    ).encode()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--contacts", type=int, default=100_000)
    ap.add_argument("--dialogs", type=int, default=10_000)
    args = ap.parse_args()
    script, config = anchor_setup(Path(tempfile.mkdtemp(prefix="ksr-mem-")))
    server, wire, sock = make_server(script, config)
    tune_for_serving(server.config.core.gc_threshold)
    print(f"started: {rss_mib():.1f} MiB", flush=True)

    async def body(clock: trio.testing.MockClock) -> None:
        rx = server.receive
        t0 = time.process_time()
        for i in range(args.contacts):
            rx(register(f"u{i}", i), CALLER[0], CALLER[1], sock)
            if i % 1000 == 999:
                wire.out.clear()
                clock.jump(0.01)
                await trio.sleep(0)
        wire.out.clear()
        clock.jump(10)  # the REGISTER transactions' wait ends
        await trio.sleep(0)
        gc.collect()
        users, contacts = server.module("usrloc").counts("location")
        mid = rss_mib()
        print(
            f"{args.contacts} REGISTERs ({users} users, {contacts} contacts in usrloc) in "
            f"{time.process_time() - t0:.1f} s CPU: {mid:.1f} MiB",
            flush=True,
        )
        contact = f"Contact: <sip:{CALLEE[0]}:{CALLEE[1]};transport=UDP>"
        t0 = time.process_time()
        for n in range(args.dialogs):
            user = f"u{n * 7 % args.contacts}"
            rx(invite(user, n), CALLER[0], CALLER[1], sock)
            fwd = wire.take(CALLEE[1])
            if len(fwd) != 1:
                raise RuntimeError(f"call {n}: {[m[:40] for m in fwd]}")
            tag = f"{n}SIPpTag01"
            rx(reply_to(fwd[0], 180, "Ringing", tag, contact), CALLEE[0], CALLEE[1], sock)
            ok = reply_to(fwd[0], 200, "OK", tag, contact, SDP)
            rx(ok, CALLEE[0], CALLEE[1], sock)
            up = wire.take(CALLER[1])
            rx(in_dialog("ACK", 1, n, up[-1]), CALLER[0], CALLER[1], sock)
            wire.out.clear()
            if n % 100 == 99:
                clock.jump(0.01)
                await trio.sleep(0)
        for _ in range(4):  # tm's wait timers free the finished transactions
            clock.jump(10)
            await trio.sleep(0)
        gc.collect()
        active = server.stats.value("dialog", "active_dialogs")
        tm = server.module("tm")
        end = rss_mib()
        print(
            f"{args.dialogs} dialogs confirmed (active_dialogs {active}, "
            f"{len(tm.engine.by_key)} transactions left) in {time.process_time() - t0:.1f} s CPU: "
            f"{end:.1f} MiB",
            flush=True,
        )
        print(
            f"per contact ~{(mid - start) * 1024 / max(1, args.contacts):.2f} KiB, per dialog "
            f"~{(end - mid) * 1024 / max(1, args.dialogs):.2f} KiB; total {end:.1f} MiB "
            f"(limit 1024 MiB per worker)"
        )

    start = rss_mib()
    run_trio(server, body)


if __name__ == "__main__":
    main()
