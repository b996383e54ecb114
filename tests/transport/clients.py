"""Small real clients for the transport tests: HTTP (h11) and WebSocket (wsproto) over trio
sockets, optionally through TLS."""

from __future__ import annotations

import ssl

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

from ksr.core.server import Server
from ksr.sip.message import Request as SipRequest
from ksr.sip.message import Response, parse_message_untrusted


def addr(server: Server, proto: str) -> tuple[str, int]:
    s = next(s for s in server.listeners if s.proto == proto)
    return s.ip, s.port


def client_ssl() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect(host: str, port: int, tls: bool = False) -> trio.abc.Stream:
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if tls:
        stream = trio.SSLStream(stream, client_ssl(), server_hostname=None)
        await stream.do_handshake()  # type: ignore[attr-defined]
    return stream


async def read_until_closed(stream: trio.abc.Stream, timeout: float = 3.0) -> bytes:
    out = b""
    with trio.fail_after(timeout):
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return out
            if not data:
                return out
            out += data


class HttpResult:
    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status, self.reason, self.headers, self.body = status, reason, headers, body


async def http_request(
    stream: trio.abc.Stream,
    method: str,
    target: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    timeout: float = 3.0,
) -> HttpResult:
    """One request/response on an open stream with an h11 client (keep-alive)."""
    conn = h11.Connection(h11.CLIENT)
    hdrs = [("Host", "127.0.0.1"), *(headers or [])]
    if body or method in ("POST", "PUT"):
        hdrs.append(("Content-Length", str(len(body))))
    data = conn.send(h11.Request(method=method, target=target, headers=hdrs))
    if body:
        data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)
    resp: h11.Response | None = None
    got = b""
    with trio.fail_after(timeout):
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
                continue
            if isinstance(ev, h11.Response):
                resp = ev
            elif isinstance(ev, h11.Data):
                got += ev.data
            elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    assert resp is not None
    headers_out = {n.decode().lower(): v.decode() for n, v in resp.headers}
    return HttpResult(resp.status_code, resp.reason.decode(), headers_out, got)


class WsClient:
    """A SIP-over-WebSocket client (RFC 7118) using wsproto."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[object] = []

    async def handshake(self, target: str = "/", subprotocols: list[str] | None = None) -> object:
        sp = ["sip"] if subprotocols is None else subprotocols
        await self.stream.send_all(
            self.ws.send(Request(host="127.0.0.1", target=target, subprotocols=sp))
        )
        return await self.next_event()

    async def next_event(self, timeout: float = 3.0) -> object:
        with trio.fail_after(timeout):
            while not self.pending:
                data = await self.stream.receive_some(65536)
                self.ws.receive_data(data or None)
                self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def send_sip(self, text: str, binary: bool = False) -> None:
        ev = BytesMessage(data=text.encode()) if binary else TextMessage(data=text)
        await self.stream.send_all(self.ws.send(ev))

    async def recv_sip(self, timeout: float = 3.0) -> SipRequest | Response:
        ev = await self.next_event(timeout)
        assert isinstance(ev, (TextMessage, BytesMessage)), f"expected a message, got {ev!r}"
        data = ev.data.encode() if isinstance(ev, TextMessage) else bytes(ev.data)
        return parse_message_untrusted(data)


__all__ = [
    "AcceptConnection",
    "CloseConnection",
    "RejectConnection",
    "HttpResult",
    "WsClient",
    "addr",
    "connect",
    "http_request",
    "read_until_closed",
]
