"""Where a call's CPU goes: full calls played through ``Server.receive`` in one process.

A scripted caller and callee exchange INVITE -> 100/180/200 -> ACK -> BYE -> 200 through a
real Server running bench/calls.py's Lua script (tm + rr), with a list instead of a socket
under it. Prints CPU µs per call and, with --profile, cProfile's top functions.

``--script anchor`` runs the reference workload instead: ../shared/anchor's kemi-routing.lua
(or .py with ``--script anchor-py``) with its ksr-anchor.toml (sanity, dialog, record-route,
location lookup; the callee registers first, as bench.anchor's callees do).

    python -m bench.profile_calls [--script calls|anchor|anchor-py] [--calls 5000] [--profile]
                                  [--sort tottime] [--top 40] [--rate 1000]

``--evict BYTES`` writes a buffer of that size before every message (inproc.ColdCaches: the
caches as cold as between the datagrams of a low rate) and reports the messages' own CPU.

``--rate``: the calls per second the mock clock advances by (default 1000: a second of calls
in a second of virtual time). A low rate (``--rate 4`` with a few hundred warm-up calls) puts
the timers in their steady state: Timer B/F, the dialog's timeouts... come due while calls run.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from pathlib import Path
from typing import Any

import trio.testing

from ksr.core.gcpolicy import tune_for_serving

from .anchor_inproc import anchor_setup, register_user
from .calls import CONFIG, SCRIPT
from .inproc import (
    PROXY,
    SDP,
    ColdCaches,
    GcMeter,
    Wire,
    cpu_now,
    head_lines,
    header_values,
    make_server,
    profiled,
    reply_to,
    report,
    run_trio,
)

CALLER = ("127.0.0.1", 5070)
CALLEE = ("127.0.0.1", 5080)
CALLS_PER_SECOND = 1000  # the mock clock advances as if calls came at this rate (--rate)


def invite(n: int) -> bytes:
    body = SDP
    return (
        f"INVITE sip:bob@{PROXY[0]}:{PROXY[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-{n}-1\r\n"
        f"From: sipp <sip:sipp@{CALLER[0]}:{CALLER[1]}>;tag={n}SIPpTag001\r\n"
        f"To: bob <sip:bob@{PROXY[0]}:{PROXY[1]}>\r\n"
        f"Call-ID: {n}-bench@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: sip:sipp@{CALLER[0]}:{CALLER[1]};transport=UDP\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def in_dialog(method: str, cseq: int, n: int, ok: bytes) -> bytes:
    """ACK or BYE from the caller, following the 200's route set to the callee's Contact."""
    lines = head_lines(ok)
    to = header_values(lines, "to")[0]
    contact = header_values(lines, "contact")[0].split(":", 1)[1].strip().strip("<>")
    routes = [
        ln.replace("Record-Route:", "Route:", 1) for ln in header_values(lines, "record-route")
    ]
    return "\r\n".join(
        [
            f"{method} {contact} SIP/2.0",
            f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-{n}-{cseq}{method}",
            f"From: sipp <sip:sipp@{CALLER[0]}:{CALLER[1]}>;tag={n}SIPpTag001",
            to,
            f"Call-ID: {n}-bench@127.0.0.1",
            f"CSeq: {cseq} {method}",
            *routes,
            f"Contact: sip:sipp@{CALLER[0]}:{CALLER[1]};transport=UDP",
            "Max-Forwards: 70",
            "Content-Length: 0",
            "",
            "",
        ]
    ).encode()


def one(msgs: list[bytes], what: str) -> bytes:
    if len(msgs) != 1:
        raise RuntimeError(f"expected one {what}, got {len(msgs)}: {[m[:40] for m in msgs]}")
    return msgs[0]


def play_call(server: Any, wire: Wire, sock: Any, n: int) -> None:
    """One whole call; raises if the proxy did not pass each message on as expected."""
    rx = server.receive
    contact = f"Contact: <sip:{CALLEE[0]}:{CALLEE[1]};transport=UDP>"
    tag = f"{n}SIPpTag01"
    rx(invite(n), CALLER[0], CALLER[1], sock)
    fwd = one(wire.take(CALLEE[1]), "INVITE to the callee")
    rx(reply_to(fwd, 180, "Ringing", tag, contact), CALLEE[0], CALLEE[1], sock)
    ok = reply_to(fwd, 200, "OK", tag, contact, SDP)
    rx(ok, CALLEE[0], CALLEE[1], sock)
    up = wire.take(CALLER[1])
    if [m[8:11] for m in up] != [b"100", b"180", b"200"]:
        raise RuntimeError(f"caller got {[m[:12] for m in up]}")
    relayed_ok = up[2]
    rx(in_dialog("ACK", 1, n, relayed_ok), CALLER[0], CALLER[1], sock)
    one(wire.take(CALLEE[1]), "ACK to the callee")
    rx(in_dialog("BYE", 3, n, relayed_ok), CALLER[0], CALLER[1], sock)
    bye = one(wire.take(CALLEE[1]), "BYE to the callee")
    rx(reply_to(bye, 200, "OK"), CALLEE[0], CALLEE[1], sock)
    if one(wire.take(CALLER[1]), "200 for the BYE")[8:11] != b"200":
        raise RuntimeError("BYE not answered")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--script", choices=("calls", "anchor", "anchor-py"), default="calls")
    ap.add_argument("--rate", type=float, default=CALLS_PER_SECOND, help="virtual calls/s")
    ap.add_argument("--lua-runtime", default="", help="lua51 (default), luajit or lua54")
    ap.add_argument(
        "--gc-threshold",
        type=int,
        default=None,
        help="young GC threshold (default: core.gc_threshold, as `ksr run`; 0 = Python's)",
    )
    ap.add_argument(
        "--evict", type=int, default=0, help="bytes written before every message (cold caches)"
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ksr-prof-"))
    if args.script == "calls":
        script = tmp / "calls.lua"
        script.write_text(SCRIPT % CALLEE[1])
        config: dict[str, Any] = {"loadmodule": ["sl", "tm", "tmx", "rr"]}
        assert CONFIG.strip() == 'loadmodule = ["sl", "tm", "tmx", "rr"]'  # same as bench/calls.py
    else:
        script, config = anchor_setup(tmp, python=args.script == "anchor-py")
    if args.lua_runtime:
        config.setdefault("core", {})["lua_runtime"] = args.lua_runtime
    server, wire, sock = make_server(script, config)
    cold = ColdCaches(args.evict) if args.evict else None
    if cold is not None:
        server.receive = cold.wrap(server.receive)  # type: ignore[method-assign]
    tune_for_serving(
        server.config.core.gc_threshold if args.gc_threshold is None else args.gc_threshold
    )

    async def body(clock: trio.testing.MockClock) -> None:
        step = 1.0 / args.rate
        if args.script != "calls":
            register_user(server, wire, sock, "bob", CALLEE)
        for i in range(args.warmup):
            play_call(server, wire, sock, i)
            clock.jump(step)
            await trio.sleep(0)
        t0 = cpu_now()
        if cold is not None:
            cold.seconds, cold.messages = 0.0, 0
        wakeups0 = server.timers.wakeups
        with profiled(args.profile, args.top, args.sort), GcMeter() as meter:
            for i in range(args.warmup, args.warmup + args.calls):
                play_call(server, wire, sock, i)
                clock.jump(step)
                await trio.sleep(0)  # let due timers run, as the real server would between packets
        report("calls", args.calls, cpu_now() - t0)
        if cold is not None:
            print(
                f"caches evicted ({args.evict:,} bytes) before each of {cold.messages} messages: "
                f"the messages alone {cold.seconds / args.calls * 1e6:.1f} us per call "
                "(the CPU above includes the writes)"
            )
        print(
            f"of which garbage collection: {meter.seconds / args.calls * 1e6:.1f} us per call "
            f"({meter.runs} collections, gc thresholds {gc.get_threshold()})"
        )
        print(
            f"timer entries held: {len(server.timers._heap)}; transactions: {len(server.module('tm').engine.by_key)}"
        )
        print(
            f"timer task wake-ups: {(server.timers.wakeups - wakeups0) / args.calls:.2f} per call"
        )

    run_trio(server, body)


if __name__ == "__main__":
    main()
