"""SIP over WebSocket (RFC 6455, RFC 7118): the opening handshake, the frame handler (wsproto)
and the ``ws:``/``wss:`` listeners.

A WebSocket connection starts as HTTP: on a ws/wss listener the transport accepts the upgrade
itself; on a tcp/tls listener the script does it in ``xhttp:request`` with
``KSR.websocket.handle_handshake()``. Each SIP message travels in one WebSocket message.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, generate_accept_token

from .hooks import hooks
from .stream import Connection, Handler, StreamTransport
from .tls import TlsTransport

if TYPE_CHECKING:
    from .http import HttpExchange

log = logging.getLogger("ksr.ws")

NORMAL_CLOSURE = 1000
MESSAGE_TOO_BIG = 1009


def _tokens(values: list[str]) -> list[str]:
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def check_handshake(
    ex: HttpExchange, allowed: Sequence[str]
) -> tuple[int, str, list[tuple[str, str]], str]:
    """RFC 6455 §4.2.1 checks. Returns (status, reason, headers, sub-protocol); status 101 = accept."""
    if ex.method != "GET" or ex.version != "1.1":
        return 400, "Bad Request", [], ""
    if not ex.get("host"):
        return 400, "Bad Request", [], ""
    if "websocket" not in [t.lower() for t in _tokens(ex.get_all("upgrade"))]:
        return 400, "Bad Request", [], ""
    if "upgrade" not in [t.lower() for t in _tokens(ex.get_all("connection"))]:
        return 400, "Bad Request", [], ""
    if (ex.get("sec-websocket-version") or "").strip() != "13":
        return 426, "Upgrade Required", [("Sec-WebSocket-Version", "13")], ""
    key = (ex.get("sec-websocket-key") or "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except (ValueError, binascii.Error):
        return 400, "Bad Request", [], ""
    offered = [t.lower() for t in _tokens(ex.get_all("sec-websocket-protocol"))]
    chosen = next((p for p in offered if p in allowed), "")
    if not chosen:
        return 400, "Bad Request", [], ""
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "upgrade"),
        ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode()),
        ("Sec-WebSocket-Protocol", chosen),
    ]
    return 101, "Switching Protocols", headers, chosen


def accept_websocket(
    ex: HttpExchange,
    allowed: Sequence[str] = ("sip",),
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bool:
    """Answer the handshake: 101 and the connection becomes WebSocket, or an error reply."""
    code, reason, headers, chosen = check_handshake(ex, allowed)
    if code != 101:
        ex.reply(code, reason, [*headers, *extra_headers], b"")
        return False
    if not ex.switch_protocol(headers):
        return False
    conn = ex.conn
    proto = "wss" if conn.proto in ("tls", "wss") else "ws"
    conn.local = dataclasses.replace(conn.local, proto=proto)
    ex.extra["handler"] = WsHandler(chosen)
    log.debug(
        "connection %d from %s:%d is now %s (%s)",
        conn.id,
        conn.peer[0],
        conn.peer[1],
        proto,
        chosen,
    )
    return True


class WsHandler:
    """WebSocket frames after the handshake: each whole message is one SIP message."""

    def __init__(self, subprotocol: str = "sip") -> None:
        self.ws = WsConnection(ConnectionType.SERVER)
        self.subprotocol = subprotocol
        self.parts: list[bytes] = []
        self.size = 0
        self.closed_by = ""  # "local" or "remote" once the closing handshake started
        self.frames_in = 0
        self.frames_out = 0
        self.created = trio.current_time()

    def feed(self, conn: Connection, data: bytes) -> bool:
        assert conn.transport is not None
        server = conn.transport.server
        try:
            self.ws.receive_data(data)
        except LocalProtocolError:
            return False  # data after the close: nothing to do but hang up
        for event in self.ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                part = event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)
                self.parts.append(part)
                self.size += len(part)
                if self.size > server.config.core.max_message_size:
                    log.info(
                        "websocket connection %d from %s:%d: message over %d bytes, closing (%d)",
                        conn.id,
                        conn.peer[0],
                        conn.peer[1],
                        server.config.core.max_message_size,
                        MESSAGE_TOO_BIG,
                    )
                    self.close(conn, MESSAGE_TOO_BIG, "Message too big")
                    return False
                if not event.message_finished:
                    continue
                msg, self.parts, self.size = b"".join(self.parts), [], 0
                self.frames_in += 1
                try:
                    server.receive(msg, conn.peer[0], conn.peer[1], conn.local, conn.id)
                except Exception:
                    log.exception(
                        "error handling a message on %s connection %d", conn.proto, conn.id
                    )
                if conn.closing:
                    return True
            elif isinstance(event, Ping):
                conn.write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self.closed_by = self.closed_by or "remote"
                    conn.write(self.ws.send(event.response()))
                else:  # a protocol error wsproto found in the frames: it tells us the code
                    log.info("websocket connection %d: %s (%s)", conn.id, event.reason, event.code)
                    self.close(conn, event.code, event.reason or "")
                return False
        return True

    def encode(self, conn: Connection, data: bytes) -> bytes | None:
        if self.ws.state is not ConnectionState.OPEN:
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            out = self.ws.send(BytesMessage(data=data))
        else:
            out = self.ws.send(TextMessage(data=text))
        self.frames_out += 1
        return out

    def close(
        self, conn: Connection, code: int = NORMAL_CLOSURE, reason: str = "Normal closure"
    ) -> bool:
        """Send a Close frame and close the connection after it."""
        if self.ws.state is not ConnectionState.OPEN:
            return False
        self.closed_by = "local"
        try:
            conn.write(self.ws.send(CloseConnection(code=code, reason=reason)))
        except LocalProtocolError:
            return False
        conn.close()
        return True

    def closed(self, conn: Connection) -> None:
        assert conn.transport is not None
        closed = hooks(conn.transport.server).ws_closed
        if closed is not None:
            closed(conn, self)


class WsTransport(StreamTransport):
    """``ws:`` listeners; also carries replies on connections upgraded on tcp listeners."""

    proto = "ws"
    can_connect = False  # ksr does not open outbound WebSocket connections

    def initial_handler(self, conn: Connection, accepted: bool) -> Handler:
        from .http import HttpHandler

        return HttpHandler(self.server, auto_websocket=True)


class WssTransport(WsTransport):
    """``wss:`` listeners: TLS (the tls module's certificate), then WebSocket."""

    proto = "wss"

    async def wrap_accepted(self, stream: trio.SocketStream) -> trio.abc.Stream:
        return TlsTransport.server_stream(self.server, stream)
