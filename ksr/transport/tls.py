"""TLS listeners and outbound TLS connections (RFC 3261 §26, sips: and transport=tls).

The same connection table, SIP framing and HTTP detection as TCP, over ``trio.SSLStream``.
The certificates and verification settings come from the ``tls`` module.
"""

from __future__ import annotations

import errno
import ipaddress
import ssl
from typing import TYPE_CHECKING, Any

import trio

from .hooks import TlsContexts, hooks
from .stream import StreamTransport

if TYPE_CHECKING:
    from ksr.core.server import Server


def _tls_module(server: Server) -> TlsContexts:
    mod = hooks(server).tls
    if mod is None:
        raise OSError(
            errno.EINVAL, 'tls and wss listeners need the tls module: add "tls" to loadmodule'
        )
    return mod


class TlsTransport(StreamTransport):
    proto = "tls"

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.wanted:
            _tls_module(self.server)  # fail at start-up, not at the first connection
        await super().serve(task_status=task_status)

    @staticmethod
    def server_stream(
        server: Server, stream: trio.SocketStream
    ) -> trio.SSLStream[trio.SocketStream]:
        ctx: ssl.SSLContext = _tls_module(server).server_context()
        # The handshake runs on the first read, inside the connection's own task.
        return trio.SSLStream(stream, ctx, server_side=True)

    async def wrap_accepted(self, stream: trio.SocketStream) -> trio.abc.Stream:
        return self.server_stream(self.server, stream)

    async def open_outbound(self, host: str, port: int) -> trio.abc.Stream:
        ctx: ssl.SSLContext = _tls_module(self.server).client_context()
        tcp = await trio.open_tcp_stream(host, port)
        name = _server_name(host, _tls_module(self.server).server_name())
        tls = trio.SSLStream(tcp, ctx, server_hostname=name)
        try:
            await tls.do_handshake()
        except BaseException:
            await tcp.aclose()
            raise
        return tls


def _server_name(host: str, configured: str) -> str | None:
    """SNI name: the configured server_name, else the host unless it is an IP address."""
    if configured:
        return configured
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    return None


def peer_certificate(stream: trio.abc.Stream | None) -> dict[str, Any] | None:
    """The verified peer certificate of a TLS connection, or None."""
    if isinstance(stream, trio.SSLStream):
        try:
            cert = stream.getpeercert()
        except (ValueError, AttributeError, trio.NeedHandshakeError):
            return None
        return cert or None
    return None
