"""TCP listeners and the connection table.

Each connection has a reader task (framing by Content-Length) and a writer task fed by a
memory channel, so the synchronous core can send on a connection without awaiting. Replies
reuse the connection the request came on; requests to a peer without a connection open one.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import TYPE_CHECKING

import trio

from ksr.core.context import SocketInfo
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.framing import StreamFramer

from .reuseport import tcp_listener

if TYPE_CHECKING:
    from ksr.core.server import Server

log = logging.getLogger("ksr.tcp")


class Connection:
    __slots__ = ("id", "peer", "local", "stream", "send_q", "recv_q", "last_used", "closing")

    def __init__(self, cid: int, peer: tuple[str, int], local: SocketInfo, stream: trio.abc.Stream | None) -> None:
        self.id = cid
        self.peer = peer
        self.local = local
        self.stream = stream
        self.send_q, self.recv_q = trio.open_memory_channel[bytes](math.inf)
        self.last_used = trio.current_time()
        self.closing = False


class TcpTransport:
    def __init__(self, server: Server, sockets: list[SocketInfo], reuse_port: bool = False) -> None:
        self.server = server
        self.wanted = sockets
        self.reuse_port = reuse_port  # worker processes share the port (ksr/workers.py)
        self.sockets: list[SocketInfo] = []
        self.by_id: dict[int, Connection] = {}
        self.by_peer: dict[tuple[str, int], Connection] = {}
        self._ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for info in self.wanted:
                try:
                    if self.reuse_port:
                        listeners = [tcp_listener(info.ip, info.port)]
                    else:
                        listeners = await trio.open_tcp_listeners(info.port, host=info.ip)
                except OSError as err:
                    raise OSError(err.errno, f"cannot listen on tcp:{info.ip}:{info.port}: {err.strerror}") from None
                for lst in listeners:
                    port = lst.socket.getsockname()[1]
                    bound = SocketInfo("tcp", info.ip, port, info.name, info.advertised_ip, info.advertised_port)
                    self.sockets.append(bound)
                    nursery.start_soon(self._accept_loop, lst, bound)
            nursery.start_soon(self._idle_reaper)
            task_status.started()

    async def _accept_loop(self, listener: trio.SocketListener, info: SocketInfo) -> None:
        async with listener:
            while True:
                stream = await listener.accept()
                if len(self.by_id) >= self.server.config.core.tcp_max_connections:
                    log.warning("tcp_max_connections reached, refusing a connection")
                    await stream.aclose()
                    continue
                peer = stream.socket.getpeername()
                conn = Connection(next(self._ids), (peer[0], peer[1]), info, stream)
                assert self._nursery is not None
                self._nursery.start_soon(self._run_connection, conn)

    async def _run_connection(self, conn: Connection) -> None:
        self.by_id[conn.id] = conn
        self.by_peer[conn.peer] = conn
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, conn, nursery.cancel_scope)
                await self._reader(conn)
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as err:
            log.debug("tcp connection %d closed: %s", conn.id, err)
        finally:
            self.by_id.pop(conn.id, None)
            if self.by_peer.get(conn.peer) is conn:
                del self.by_peer[conn.peer]
            if conn.stream is not None:
                with trio.move_on_after(1):
                    await conn.stream.aclose()

    async def _reader(self, conn: Connection) -> None:
        assert conn.stream is not None
        framer = StreamFramer(self.server.config.core.max_message_size)
        while True:
            data = await conn.stream.receive_some(65536)
            if not data:
                return
            conn.last_used = trio.current_time()
            framer.feed(data)
            while True:
                try:
                    msg = framer.next_message()
                except RemoteProtocolError as err:
                    log.info("closing tcp connection %d from %s:%d: %s", conn.id, conn.peer[0], conn.peer[1], err.reason)
                    return
                if msg is None:
                    break
                if msg == b"\r\n\r\n":
                    conn.send_q.send_nowait(b"\r\n")  # RFC 5626 keep-alive pong
                    continue
                try:
                    self.server.receive(msg, conn.peer[0], conn.peer[1], conn.local, conn.id)
                except Exception:
                    log.exception("error handling a message on tcp connection %d", conn.id)
            await trio.lowlevel.checkpoint()

    async def _writer(self, conn: Connection, scope: trio.CancelScope) -> None:
        assert conn.stream is not None
        async for data in conn.recv_q:
            if not data:
                break
            await conn.stream.send_all(data)
            conn.last_used = trio.current_time()
        scope.cancel()

    async def _idle_reaper(self) -> None:
        while True:
            await trio.sleep(5)
            limit = self.server.config.core.tcp_connection_lifetime
            now = trio.current_time()
            for conn in list(self.by_id.values()):
                if now - conn.last_used > limit:
                    conn.send_q.send_nowait(b"")

    async def _connect(self, conn: Connection) -> None:
        try:
            with trio.fail_after(5):
                conn.stream = await trio.open_tcp_stream(conn.peer[0], conn.peer[1])
        except (OSError, trio.TooSlowError) as err:
            log.warning("tcp connect to %s:%d failed: %s", conn.peer[0], conn.peer[1], err)
            self.by_id.pop(conn.id, None)
            if self.by_peer.get(conn.peer) is conn:
                del self.by_peer[conn.peer]
            return
        await self._run_connection(conn)

    def send(self, data: bytes, host: str, port: int, sock: SocketInfo | None = None, conn_id: int = 0) -> bool:
        conn = self.by_id.get(conn_id) if conn_id else None
        if conn is None:
            conn = self.by_peer.get((host, port))
        if conn is None:
            if self._nursery is None or not self.sockets:
                return False
            local = sock if sock is not None and sock.proto == "tcp" else self.sockets[0]
            conn = Connection(next(self._ids), (host, port), local, None)
            self.by_id[conn.id] = conn
            self.by_peer[conn.peer] = conn
            self._nursery.start_soon(self._connect, conn)
        conn.send_q.send_nowait(data)
        return True
