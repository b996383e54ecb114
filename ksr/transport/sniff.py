"""The first bytes of an accepted TCP/TLS connection say whether it speaks SIP or HTTP."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from ksr.sip.errors import RemoteProtocolError
from ksr.sip.framing import StreamFramer

from .hooks import hooks

if TYPE_CHECKING:
    from .stream import Connection

log = logging.getLogger("ksr.stream")

# RFC 9112 §3: method SP request-target SP HTTP-version
HTTP_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ \S+ HTTP/\d\.\d\r?")
MAX_FIRST_LINE = 8192


class SipHandler:
    """SIP messages framed by Content-Length (RFC 3261 §18.3), CRLF keep-alives answered."""

    def __init__(self) -> None:
        self.framer: StreamFramer | None = None

    def feed(self, conn: Connection, data: bytes) -> bool:
        assert conn.transport is not None
        server = conn.transport.server
        if self.framer is None:
            self.framer = StreamFramer(server.config.core.max_message_size)
        framer = self.framer
        framer.feed(data)
        while True:
            try:
                msg = framer.next_message()
            except RemoteProtocolError as err:
                log.info(
                    "closing %s connection %d from %s:%d: %s",
                    conn.proto,
                    conn.id,
                    conn.peer[0],
                    conn.peer[1],
                    err.reason,
                )
                return False
            if msg is None:
                return True
            if msg == b"\r\n\r\n":
                conn.write(b"\r\n")  # RFC 5626 keep-alive pong
                continue
            try:
                server.receive(msg, conn.peer[0], conn.peer[1], conn.local, conn.id)
            except Exception:
                log.exception("error handling a message on %s connection %d", conn.proto, conn.id)
            if conn.handler is not self:
                return True  # the script closed or switched the connection

    def encode(self, conn: Connection, data: bytes) -> bytes | None:
        return data

    def closed(self, conn: Connection) -> None:
        pass


class FirstBytes:
    """Waits for the first line, then hands the connection to SIP or (with xhttp) HTTP."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, conn: Connection, data: bytes) -> bool:
        self.buf += data
        buf = self.buf
        if buf[:1] in (b"\r", b"\n"):
            return self._switch(conn, SipHandler())
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) < MAX_FIRST_LINE:
                return True
            return self._switch(conn, SipHandler())  # the framer reports the oversized header
        if HTTP_REQUEST_LINE.fullmatch(bytes(buf[:end])):
            assert conn.transport is not None
            if hooks(conn.transport.server).http is None:
                log.info(
                    "HTTP request on %s connection %d without the xhttp module: closing",
                    conn.proto,
                    conn.id,
                )
                return False
            from .http import HttpHandler

            return self._switch(conn, HttpHandler(conn.transport.server, auto_websocket=False))
        return self._switch(conn, SipHandler())

    def _switch(self, conn: Connection, handler: SipHandler | object) -> bool:
        conn.handler = handler  # type: ignore[assignment]
        data, self.buf = bytes(self.buf), bytearray()
        return conn.handler.feed(conn, data)  # type: ignore[union-attr]

    def encode(self, conn: Connection, data: bytes) -> bytes | None:
        return data  # a request we send first on a connection we accepted: it is SIP

    def closed(self, conn: Connection) -> None:
        pass
