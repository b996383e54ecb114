"""A TCP proxy in front of a real server (PostgreSQL, Redis) that a test can slow down, cut,
hang or make answer garbage. It runs its own trio loop in a thread, so a ksr worker that
blocked its loop could never stall the proxy (and a test would see it).

Modes: ``ok`` relays, answers delivered ``delay`` seconds after they arrived (order kept);
``cut`` resets every connection and refuses new ones; ``hang`` accepts and relays nothing;
``garbage`` answers every request with random bytes.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio


def address_of(url: str) -> tuple[str, int]:
    """(host, port) of a postgres:// or redis:// URL."""
    u = urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or (5432 if url.startswith("postgres") else 6379)


def url_via(url: str, port: int) -> str:
    """``url`` with its host:port replaced by 127.0.0.1:port (the proxy)."""
    u = urlsplit(url)
    cred = u.netloc.rpartition("@")[0]
    return urlunsplit(u._replace(netloc=f"{cred + '@' if cred else ''}127.0.0.1:{port}"))


class DbProxy:
    def __init__(self, target: tuple[str, int], delay: float = 0.0) -> None:
        self.target = target
        self.delay = delay
        self.mode = "ok"
        self.port = 0
        self.answers = 0  # server answers relayed
        self.statements = 0  # PostgreSQL statements run (Execute and simple Query messages)
        self.connections = 0  # client connections accepted
        self._token: trio.lowlevel.TrioToken | None = None
        self._conns: set[trio.CancelScope] = set()
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    def __enter__(self) -> DbProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(10)

    def set_mode(self, mode: str) -> None:
        """``ok``, ``cut``, ``hang`` or ``garbage``; live connections are cut on any change
        but to ``ok`` (a server that restarted, or a network that broke)."""
        self.mode = mode
        if mode != "ok" and self._token is not None:
            self._token.run_sync_soon(self._cut_all)

    def _cut_all(self) -> None:
        if self.mode in ("cut", "garbage"):
            for scope in list(self._conns):
                scope.cancel()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as n:
            n.start_soon(trio.serve_listeners, self._handle, listeners)
            self._ready.set()
            await self._stop.wait()
            n.cancel_scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        try:
            if self.mode != "cut":
                await self._relay(client)
        except Exception:  # a broken connection ends that connection, never the proxy
            pass
        finally:
            await _reset(client)

    async def _relay(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._conns.add(scope)
            try:
                if self.mode == "hang":
                    await trio.sleep_forever()
                upstream = await trio.open_tcp_stream(*self.target)
                try:
                    async with trio.open_nursery() as n:
                        n.start_soon(self._up, client, upstream)
                        n.start_soon(self._down, upstream, client)
                finally:
                    await _reset(upstream)
            finally:
                self._conns.discard(scope)

    async def _up(self, client: trio.SocketStream, upstream: trio.SocketStream) -> None:
        count = _PgStatements()
        while data := await client.receive_some(65536):
            self.statements += count.feed(data)
            if self.mode == "garbage":
                await client.send_all(os.urandom(64))
                continue
            while self.mode == "hang":
                await trio.sleep(0.05)
            await upstream.send_all(data)
        await upstream.aclose()

    async def _down(self, upstream: trio.SocketStream, client: trio.SocketStream) -> None:
        send, recv = trio.open_memory_channel[tuple[float, bytes]](1000)
        async with trio.open_nursery() as n:

            async def deliver() -> None:
                async for due, data in recv:
                    await trio.sleep_until(due)
                    while self.mode == "hang":
                        await trio.sleep(0.05)
                    await client.send_all(data)
                    self.answers += 1

            n.start_soon(deliver)
            while data := await upstream.receive_some(65536):
                await send.send((trio.current_time() + self.delay, data))
            await send.aclose()


class _PgStatements:
    """Counts the statements in what a PostgreSQL client sends (frontend protocol v3): after
    the untyped start-up messages (SSLRequest, GSSENCRequest, StartupMessage), each message is
    a type byte and a length; ``E`` (Execute) and ``Q`` (Query) run a statement. Anything that
    is not PostgreSQL counts nothing."""

    _NEGOTIATE = (80877103, 80877104)  # SSLRequest, GSSENCRequest: start-up goes on

    def __init__(self) -> None:
        self.buf = b""
        self.starting = True

    def feed(self, data: bytes) -> int:
        self.buf += data
        n = 0
        while True:
            if self.starting:
                if len(self.buf) < 8:
                    return n
                size, code = struct.unpack("!ii", self.buf[:8])
                if len(self.buf) < size or size < 8:
                    return n
                self.buf = self.buf[size:]
                self.starting = code in self._NEGOTIATE
                continue
            if len(self.buf) < 5:
                return n
            kind = self.buf[:1]
            size = struct.unpack("!i", self.buf[1:5])[0]
            if size < 4 or len(self.buf) < 1 + size:
                return n
            self.buf = self.buf[1 + size :]
            n += kind in (b"E", b"Q")


async def _reset(stream: trio.SocketStream) -> None:
    """Close with RST, as a crashed server or a broken network looks to the client."""
    with trio.CancelScope(shield=True):
        try:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        await stream.aclose()
