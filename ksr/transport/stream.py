"""Stream transports (TCP, TLS, WS, WSS) and the connection table they share.

Each connection has a reader task and a writer task fed by a memory channel, so the
synchronous core can send on a connection without awaiting. What the bytes mean is up to the
connection's *handler*: SIP framed by Content-Length, HTTP (h11) or WebSocket frames
(wsproto). A handler can hand the connection to another one (HTTP → WebSocket upgrade).
Connection ids are unique over all stream transports, as ``$conid`` is in Kamailio.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import TYPE_CHECKING, Protocol

import trio

from ksr.core.context import SocketInfo

from .reuseport import tcp_listener

if TYPE_CHECKING:
    from ksr.core.server import Server

log = logging.getLogger("ksr.stream")

STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
GOING_AWAY = 1001  # RFC 6455 close code for idle WebSocket connections
FLUSH_TIMEOUT = 2.0  # seconds a closing connection may take to write out what is queued
# A connection we refuse (a 431, a 1009 close) may still be sending: closing with unread data
# makes the kernel send a reset, and the peer may lose our answer. Read and drop a little first.
LINGER_TIME = 1.0
LINGER_BYTES = 4 * 1024 * 1024
# Which connections a send for a given proto may use (WS and WSS clients share one table).
COMPATIBLE = {"tcp": ("tcp",), "tls": ("tls",), "ws": ("ws", "wss"), "wss": ("wss", "ws")}


class Handler(Protocol):
    """What a connection's bytes mean. ``feed`` returns False to close the connection."""

    def feed(self, conn: Connection, data: bytes) -> bool: ...

    def encode(self, conn: Connection, data: bytes) -> bytes | None:
        """Bytes to write for one outgoing SIP message, or None if this connection can't carry SIP."""
        ...

    def closed(self, conn: Connection) -> None: ...


class Connection:
    __slots__ = (
        "id",
        "peer",
        "local",
        "stream",
        "send_q",
        "recv_q",
        "last_used",
        "closing",
        "handler",
        "transport",
        "created",
    )

    def __init__(
        self, cid: int, peer: tuple[str, int], local: SocketInfo, stream: trio.abc.Stream | None
    ) -> None:
        self.id = cid
        self.peer = peer
        self.local = local  # the socket messages are received on; its proto is the connection's
        self.stream = stream
        self.send_q, self.recv_q = trio.open_memory_channel[bytes](math.inf)
        self.last_used = trio.current_time()
        self.created = trio.current_time()
        self.closing = False
        self.handler: Handler | None = None
        self.transport: StreamTransport | None = None

    @property
    def proto(self) -> str:
        return self.local.proto

    def write(self, data: bytes) -> None:
        """Queue raw bytes for the writer task."""
        if data and not self.closing:
            self.send_q.send_nowait(data)

    def send_message(self, data: bytes) -> bool:
        """Queue one SIP message, encoded the way this connection needs (WS frames...)."""
        if self.closing:
            return False
        out = self.handler.encode(self, data) if self.handler is not None else data
        if out is None:
            return False
        self.send_q.send_nowait(out)
        return True

    def close(self) -> None:
        """Close once everything queued so far is written."""
        if not self.closing:
            self.closing = True
            self.send_q.send_nowait(b"")


class ConnTable:
    """Every stream connection of one server, by id and by peer address."""

    def __init__(self) -> None:
        self.by_id: dict[int, Connection] = {}
        self.by_peer: dict[tuple[str, int], Connection] = {}
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def add(self, conn: Connection) -> None:
        self.by_id[conn.id] = conn
        self.by_peer[conn.peer] = conn

    def remove(self, conn: Connection) -> None:
        self.by_id.pop(conn.id, None)
        if self.by_peer.get(conn.peer) is conn:
            del self.by_peer[conn.peer]

    def find(self, proto: str, host: str, port: int, conn_id: int = 0) -> Connection | None:
        if conn_id:
            conn = self.by_id.get(conn_id)
            if conn is not None and not conn.closing:
                return conn
        conn = self.by_peer.get((host, port))
        if conn is not None and not conn.closing and conn.proto in COMPATIBLE.get(proto, (proto,)):
            return conn
        return None


class StreamTransport:
    """Listeners of one stream proto; subclasses say how to wrap and read a connection."""

    proto = "tcp"
    can_connect = True  # open outbound connections for requests to peers without one

    def __init__(
        self,
        server: Server,
        sockets: list[SocketInfo],
        reuse_port: bool = False,
        table: ConnTable | None = None,
    ) -> None:
        self.server = server
        self.wanted = sockets
        self.reuse_port = reuse_port  # worker processes share the port (ksr/workers.py)
        self.sockets: list[SocketInfo] = []
        self.table = table if table is not None else ConnTable()
        self._nursery: trio.Nursery | None = None

    # the connection table, under the names TcpTransport always had
    @property
    def by_id(self) -> dict[int, Connection]:
        return self.table.by_id

    @property
    def by_peer(self) -> dict[tuple[str, int], Connection]:
        return self.table.by_peer

    # -- hooks ----------------------------------------------------------------------------------
    async def wrap_accepted(self, stream: trio.SocketStream) -> trio.abc.Stream:
        return stream

    async def open_outbound(self, host: str, port: int) -> trio.abc.Stream:
        return await trio.open_tcp_stream(host, port)

    def initial_handler(self, conn: Connection, accepted: bool) -> Handler:
        from .sniff import FirstBytes, SipHandler

        return FirstBytes() if accepted else SipHandler()

    # -- serving --------------------------------------------------------------------------------
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
                    raise OSError(
                        err.errno,
                        f"cannot listen on {self.proto}:{info.ip}:{info.port}: {err.strerror}",
                    ) from None
                for lst in listeners:
                    port = lst.socket.getsockname()[1]
                    bound = SocketInfo(
                        self.proto,
                        info.ip,
                        port,
                        info.name,
                        info.advertised_ip,
                        info.advertised_port,
                    )
                    self.sockets.append(bound)
                    nursery.start_soon(self._accept_loop, lst, bound)
            nursery.start_soon(self._idle_reaper)
            task_status.started()

    async def _accept_loop(self, listener: trio.SocketListener, info: SocketInfo) -> None:
        async with listener:
            while True:
                stream = await listener.accept()
                if len(self.table.by_id) >= self.server.config.core.tcp_max_connections:
                    log.warning("tcp_max_connections reached, refusing a %s connection", self.proto)
                    await stream.aclose()
                    continue
                try:
                    peer = stream.socket.getpeername()
                except OSError:
                    await stream.aclose()
                    continue
                conn = Connection(self.table.next_id(), (peer[0], peer[1]), info, None)
                conn.transport = self
                assert self._nursery is not None
                self._nursery.start_soon(self._accepted, conn, stream)

    async def _accepted(self, conn: Connection, raw: trio.SocketStream) -> None:
        try:
            conn.stream = await self.wrap_accepted(raw)
        except (trio.BrokenResourceError, OSError) as err:
            log.debug(
                "%s connection from %s:%d failed: %s", self.proto, conn.peer[0], conn.peer[1], err
            )
            await raw.aclose()
            return
        conn.handler = self.initial_handler(conn, True)
        await self._run_connection(conn)

    async def _run_connection(self, conn: Connection) -> None:
        self.table.add(conn)
        refused = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, conn, nursery.cancel_scope)
                refused = await self._reader(conn)
                # let the writer flush what is queued (e.g. a 400 before closing), briefly
                conn.close()
                nursery.cancel_scope.deadline = trio.current_time() + FLUSH_TIMEOUT
            if refused:
                await self._linger(conn)
        except* STREAM_ERRORS as group:  # the peer went away (reset, TLS failure...)
            log.debug("%s connection %d closed: %s", conn.proto, conn.id, group.exceptions[0])
        finally:
            conn.closing = True
            self.table.remove(conn)
            if conn.handler is not None:
                try:
                    conn.handler.closed(conn)
                except Exception:
                    log.exception("error closing %s connection %d", conn.proto, conn.id)
            if conn.stream is not None:
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    try:
                        await conn.stream.aclose()
                    except STREAM_ERRORS:
                        pass

    async def _reader(self, conn: Connection) -> bool:
        """Feed the handler until the peer closes (False) or the handler refuses (True)."""
        assert conn.stream is not None
        while True:
            try:
                data = await conn.stream.receive_some(65536)
            except STREAM_ERRORS as err:
                log.debug("%s connection %d: read failed: %s", conn.proto, conn.id, err)
                return False
            if not data:
                return False
            conn.last_used = trio.current_time()
            assert conn.handler is not None
            sync = self.server.sync_shared
            if sync is not None:
                sync()  # worker processes: the others' shared-table writes first
            try:
                keep = conn.handler.feed(conn, bytes(data))
            except Exception:  # a bug in one handler must cost only this connection
                log.exception("error handling data on %s connection %d", conn.proto, conn.id)
                keep = False
            if not keep:
                conn.close()
                return True
            await trio.lowlevel.checkpoint()

    async def _linger(self, conn: Connection) -> None:
        """After our last bytes: no more from us, and what the peer still sends is dropped."""
        stream = conn.stream
        if stream is None:
            return
        with trio.move_on_after(LINGER_TIME):
            if isinstance(stream, trio.SocketStream):
                await stream.send_eof()
            dropped = 0
            while dropped < LINGER_BYTES:
                data = await stream.receive_some(65536)
                if not data:
                    break
                dropped += len(data)

    async def _writer(self, conn: Connection, scope: trio.CancelScope) -> None:
        assert conn.stream is not None
        try:
            async for data in conn.recv_q:
                if not data:
                    break
                await conn.stream.send_all(data)
                conn.last_used = trio.current_time()
        except STREAM_ERRORS as err:
            log.debug("%s connection %d: write failed: %s", conn.proto, conn.id, err)
        scope.cancel()

    async def _idle_reaper(self) -> None:
        while True:
            await trio.sleep(5)
            limit = self.server.config.core.tcp_connection_lifetime
            now = trio.current_time()
            for conn in list(self.table.by_id.values()):
                if conn.transport is self and now - conn.last_used > limit:
                    close = getattr(conn.handler, "close", None)  # WebSocket: a Close frame first
                    if close is None or not close(conn, GOING_AWAY, "Idle connection"):
                        conn.close()

    async def _connect(self, conn: Connection) -> None:
        try:
            with trio.fail_after(5):
                conn.stream = await self.open_outbound(conn.peer[0], conn.peer[1])
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as err:
            log.warning(
                "%s connect to %s:%d failed: %s", self.proto, conn.peer[0], conn.peer[1], err
            )
            self.table.remove(conn)
            return
        await self._run_connection(conn)

    def connection(self, conn_id: int) -> Connection | None:
        return self.table.by_id.get(conn_id)

    def send(
        self, data: bytes, host: str, port: int, sock: SocketInfo | None = None, conn_id: int = 0
    ) -> bool:
        conn = self.table.find(self.proto, host, port, conn_id)
        if conn is None:
            if not self.can_connect or self._nursery is None or not self.sockets:
                log.info("no %s connection to %s:%d", self.proto, host, port)
                return False
            local = sock if sock is not None and sock.proto == self.proto else self.sockets[0]
            conn = Connection(self.table.next_id(), (host, port), local, None)
            conn.transport = self
            conn.handler = self.initial_handler(conn, False)
            self.table.add(conn)
            self._nursery.start_soon(self._connect, conn)
        return conn.send_message(data)
