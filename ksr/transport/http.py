"""HTTP/1.1 on a stream connection (h11): requests become ``HttpExchange`` objects that the
xhttp module (or, on ws/wss listeners, the WebSocket handshake) answers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

import h11

from ksr.sip.hostport import format_hostport
from ksr.sip.message import Header, Request

from .hooks import hooks

if TYPE_CHECKING:
    from ksr.core.server import Server

    from .stream import Connection

log = logging.getLogger("ksr.http")

HTTP_VERSIONS = (b"1.0", b"1.1")
ALLOW = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"  # what xhttp hands to the script


def reason_phrase(code: int) -> str:
    """RFC 9110's reason phrase for a status (431 Request Header Fields Too Large...)."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def refusal(req: h11.Request) -> tuple[int, tuple[tuple[str, str], ...], str] | None:
    """A request ksr answers itself before the script sees it: (status, headers, why)."""
    if req.http_version not in HTTP_VERSIONS:
        return 505, (), f"HTTP/{req.http_version.decode('ascii', 'replace')} is not supported"
    if req.method == b"CONNECT":  # no tunnels through a SIP server
        return 405, (("Allow", ALLOW),), "CONNECT is not allowed"
    return None


@dataclass
class HttpExchange:
    """One HTTP request and the means to answer it (once)."""

    conn: Connection
    handler: HttpHandler
    method: str
    target: str
    version: str  # "1.1"
    headers: list[tuple[str, str]]
    body: bytes
    replied: int = 0  # status sent, 0 = not yet
    switched: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        key = name.lower()
        for n, v in self.headers:
            if n.lower() == key:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self.headers if n.lower() == key]

    def as_sip_request(self) -> Request:
        """The request as a SIP message, so $rm, $hdr(...), $rb work in the script. A Via naming
        the client is put first when the request has none (Kamailio does the same)."""
        hdrs = [Header(n, v) for n, v in self.headers]
        if not any(h.key == "via" for h in hdrs):
            ip, port = self.conn.peer
            proto = "TLS" if self.conn.proto in ("tls", "wss") else "TCP"
            hdrs.insert(0, Header("Via", f"SIP/2.0/{proto} {format_hostport(ip, port)}"))
        return Request(self.method, self.target, hdrs, self.body, f"HTTP/{self.version}")

    def reply(self, code: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> bool:
        """Send the response; False if one was sent already or the state forbids it."""
        if self.replied:
            return False
        hdrs = [(n, v) for n, v in headers if n.lower() != "content-length"]
        hdrs.append(("Content-Length", str(len(body))))
        if self.method == "HEAD":
            body = b""
        try:
            out = self.handler.h11.send(
                h11.Response(status_code=code, headers=hdrs, reason=reason.encode())
            )
            out = (
                (out or b"") + (self.handler.h11.send(h11.Data(data=body)) or b"")
                if body
                else (out or b"")
            )
            out += self.handler.h11.send(h11.EndOfMessage()) or b""
        except (h11.LocalProtocolError, ValueError, UnicodeEncodeError) as err:
            log.warning("cannot send HTTP %d reply on connection %d: %s", code, self.conn.id, err)
            return False
        self.replied = code
        self.conn.write(out)
        return True

    def switch_protocol(self, headers: list[tuple[str, str]]) -> bool:
        """Answer 101 Switching Protocols (the caller then installs the new handler)."""
        if self.replied:
            return False
        try:
            out = self.handler.h11.send(
                h11.InformationalResponse(
                    status_code=101, headers=headers, reason=b"Switching Protocols"
                )
            )
        except h11.LocalProtocolError as err:
            log.warning("cannot switch protocols on connection %d: %s", self.conn.id, err)
            return False
        self.replied = 101
        self.switched = True
        self.conn.write(out or b"")
        return True


class HttpHandler:
    """Reads HTTP/1.1 requests with h11 and answers each one before reading the next."""

    def __init__(self, server: Server, auto_websocket: bool) -> None:
        self.server = server
        self.auto_websocket = auto_websocket  # ws/wss listener: upgrade without the script
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=server.config.core.max_message_size
        )
        self.request: h11.Request | None = None
        self.body = bytearray()

    def feed(self, conn: Connection, data: bytes) -> bool:
        self.h11.receive_data(data)
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as err:
                code = err.error_status_hint
                log.info(
                    "bad HTTP request on connection %d from %s:%d: %s (answered %d)",
                    conn.id,
                    conn.peer[0],
                    conn.peer[1],
                    err,
                    code,
                )
                self._error(conn, code)
                return False
            if event is h11.NEED_DATA:
                return True
            if event is h11.PAUSED:
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                    continue
                return True
            if isinstance(event, h11.Request):
                refused = refusal(event)
                if refused is not None:
                    code, headers, why = refused
                    log.info(
                        "HTTP request on connection %d from %s:%d: %s (answered %d)",
                        conn.id,
                        conn.peer[0],
                        conn.peer[1],
                        why,
                        code,
                    )
                    self._error(conn, code, headers)
                    return False
                self.request = event
                self.body = bytearray()
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > self.server.config.core.max_message_size:
                    log.info(
                        "HTTP request on connection %d from %s:%d: body over %d bytes (answered 413)",
                        conn.id,
                        conn.peer[0],
                        conn.peer[1],
                        self.server.config.core.max_message_size,
                    )
                    self._error(conn, 413)
                    return False
            elif isinstance(event, h11.EndOfMessage):
                exchange = self._exchange(conn)
                self._dispatch(exchange)
                if exchange.switched:
                    trailing, _ = self.h11.trailing_data
                    return self._switched(conn, exchange, bytes(trailing))
                if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
                    return False
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return False

    def _exchange(self, conn: Connection) -> HttpExchange:
        req = self.request
        assert req is not None
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in req.headers.raw_items()]
        return HttpExchange(
            conn,
            self,
            req.method.decode("ascii", "replace"),
            req.target.decode("latin-1"),
            req.http_version.decode("ascii", "replace"),
            headers,
            bytes(self.body),
        )

    def _dispatch(self, ex: HttpExchange) -> None:
        if self.auto_websocket:
            self._upgrade(ex)
            return
        handler = hooks(self.server).http
        if handler is None:
            ex.reply(404, "Not Found", [], b"")
            return
        ok = True
        try:
            ok = handler(ex)
        except Exception:
            log.exception("xhttp failed on a request on connection %d", ex.conn.id)
        if not ex.replied:  # the script did not answer: tell the client rather than hang
            if not ok:
                ex.reply(500, "Server Internal Error", [], b"")
            else:
                ex.reply(404, "Not Found", [], b"")

    def _upgrade(self, ex: HttpExchange) -> None:
        """ws/wss listeners: the handshake needs no script (sub-protocols from the websocket
        module when it is loaded, else ``sip``)."""
        accept = hooks(self.server).ws_accept
        if accept is not None:
            accept(ex)
            return
        from .ws import accept_websocket

        if not ex.get("upgrade"):
            ex.reply(
                426,
                "Upgrade Required",
                [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
                b"",
            )
            return
        accept_websocket(ex)

    def _switched(self, conn: Connection, ex: HttpExchange, trailing: bytes) -> bool:
        new = ex.extra.get("handler")
        if new is None:
            return False
        conn.handler = new  # type: ignore[assignment]
        if trailing:
            return conn.handler.feed(conn, trailing)  # type: ignore[union-attr]
        return True

    def _error(
        self, conn: Connection, code: int, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """Answer ``code`` with its RFC reason phrase; the connection closes after it."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            out = self.h11.send(
                h11.Response(
                    status_code=code,
                    reason=reason_phrase(code).encode(),
                    headers=[*headers, ("Content-Length", "0"), ("Connection", "close")],
                )
            )
            out = (out or b"") + (self.h11.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            return
        conn.write(out)

    def encode(self, conn: Connection, data: bytes) -> bytes | None:
        return None  # no SIP on an HTTP connection

    def closed(self, conn: Connection) -> None:
        pass
