"""In-process load for profiling: a real Server fed through ``Server.receive``, whose sends
land in a list instead of on a socket, and tiny scripted peers that answer from that list.

The peers build their messages with plain string operations (no ksr parser), so a profile
of a run shows ksr's work, not the load generator's.
"""

from __future__ import annotations

import cProfile
import ctypes
import gc
import io
import pstats
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ksr.core.config import Config
from ksr.core.context import SocketInfo
from ksr.core.server import Server

PROXY = ("127.0.0.1", 5060)


@dataclass(slots=True)
class Wire:
    """Stands where the UDP transport stands: keeps (bytes, host, port) of every send."""

    out: list[tuple[bytes, str, int]] = field(default_factory=list)
    sockets: list[SocketInfo] = field(default_factory=list)

    def send(self, data: bytes, host: str, port: int, sock: Any = None, conn_id: int = 0) -> bool:
        self.out.append((data, host, port))
        return True

    def take(self, port: int) -> list[bytes]:
        """What was sent to ``port`` since the last take (and forget it)."""
        mine = [d for d, _, p in self.out if p == port]
        self.out = [x for x in self.out if x[2] != port]
        return mine


def make_server(script: Path, config: dict[str, Any]) -> tuple[Server, Wire, SocketInfo]:
    core = {"listen": [f"udp:{PROXY[0]}:{PROXY[1]}"], **config.get("core", {})}
    data = {**config, "core": core}
    server = Server(Config.model_validate(data), script)
    server.load_script()
    wire = Wire()
    server.transports["udp"] = wire
    sock = server.listeners[0]
    wire.sockets = [sock]
    return server, wire, sock


# -- minimal SIP text handling for the peers ------------------------------------------------------


def head_lines(data: bytes) -> list[str]:
    return data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")


def header_values(lines: list[str], *names: str) -> list[str]:
    """Header lines (whole) whose name is one of ``names`` (full form, case as sent)."""
    want = tuple(n.lower() + ":" for n in names)
    return [ln for ln in lines[1:] if ln.lower().startswith(want)]


def reply_to(
    request: bytes, code: int, reason: str, to_tag: str = "", extra: str = "", body: str = ""
) -> bytes:
    """A UAS reply: Via/Record-Route/From/Call-ID/CSeq copied, To tagged, like sipp's [last_*]."""
    lines = head_lines(request)
    copied = header_values(lines, "via", "record-route", "from", "call-id", "cseq")
    to = header_values(lines, "to")[0]
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    out = (
        [f"SIP/2.0 {code} {reason}", *copied, to, extra]
        if extra
        else [f"SIP/2.0 {code} {reason}", *copied, to]
    )
    if body:
        out.append("Content-Type: application/sdp")
    out.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(out) + "\r\n\r\n" + body).encode()


SDP = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


# -- running and profiling ----------------------------------------------------------------------


def run_trio(server: Server, body: Callable[[trio.testing.MockClock], Any]) -> Any:
    """Run ``body(clock)`` inside trio with the server's timer task and modules started,
    on a mock clock the body advances (so tm's timers fire as they would in real time)."""
    import trio.testing

    result: list[Any] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server.nursery = nursery
            server.runner.nursery = nursery  # routes run as when serving (ksr/suspend)
            await nursery.start(server.timers.run)
            for m in server.modules.values():
                await m.start(nursery)
            result.append(await body(clock))
            nursery.cancel_scope.cancel()
        for m in server.modules.values():
            m.stop()

    clock = trio.testing.MockClock()
    trio.run(main, clock=clock)
    return result[0]


@contextmanager
def profiled(enabled: bool, top: int, sort: str) -> Iterator[None]:
    prof = cProfile.Profile() if enabled else None
    if prof is not None:
        prof.enable()
    try:
        yield
    finally:
        if prof is not None:
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats(sort).print_stats(top)
            print(s.getvalue())


def report(what: str, n: int, cpu: float) -> None:
    print(
        f"{n} {what} in {cpu:.3f} s CPU: {cpu / n * 1e6:.1f} us per {what.rstrip('s')} "
        f"({n / cpu:.0f}/s on one core)"
    )


class GcMeter:
    """Time spent in the garbage collector while the block runs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.runs = 0
        self._t0 = 0.0

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0
            self.runs += 1

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._cb)


def cpu_now() -> float:
    return time.process_time()


class ColdCaches:
    """Evicts the CPU's private caches before every message a run feeds the server, as the
    idle time between datagrams of a server at a low rate does, and times the messages alone.

    A served ``ksr run`` at 200 calls/s spends ~2.4x the CPU per call of the same code in a
    hot loop: between two datagrams the core sleeps and its caches go cold. Writing ``size``
    bytes (more than L1 and L2) before each message puts the in-process loop in that state.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._buf = ctypes.create_string_buffer(size)
        self._addr = ctypes.addressof(self._buf)
        self.seconds = 0.0
        self.messages = 0

    def wrap(self, receive: Callable[..., Any]) -> Callable[..., Any]:
        def cold_receive(*args: Any) -> Any:
            ctypes.memset(self._addr, self.messages & 0xFF, self.size)
            t0 = cpu_now()
            try:
                return receive(*args)
            finally:
                self.seconds += cpu_now() - t0
                self.messages += 1

        return cold_receive
