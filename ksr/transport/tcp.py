"""TCP listeners.

The connection table, reader and writer tasks live in ``stream.py`` (shared with TLS and
WebSocket). Each connection has a reader task (framing by Content-Length) and a writer task fed
by a memory channel, so the synchronous core can send on a connection without awaiting. Replies
reuse the connection the request came on; requests to a peer without a connection open one.
An accepted connection whose first line is an HTTP request goes to the xhttp module instead.
"""

from __future__ import annotations

from .stream import Connection, ConnTable, StreamTransport

__all__ = ["Connection", "ConnTable", "TcpTransport"]


class TcpTransport(StreamTransport):
    """``tcp:`` listeners. ``TcpTransport(server, sockets, reuse_port=...)`` as before; a shared
    ConnTable can be passed as ``table``."""

    proto = "tcp"
