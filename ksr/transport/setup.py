"""Starting the stream transports of a server: TCP, TLS, WS and WSS share one connection table."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import trio

from .hooks import hooks
from .stream import ConnTable, StreamTransport
from .tcp import TcpTransport
from .tls import TlsTransport
from .ws import WssTransport, WsTransport

if TYPE_CHECKING:
    from ksr.core.server import Server

STREAM_TRANSPORTS: dict[str, type[StreamTransport]] = {
    "tcp": TcpTransport,
    "tls": TlsTransport,
    "ws": WsTransport,
    "wss": WssTransport,
}


async def open_stream_transports(server: Server, nursery: trio.Nursery) -> None:
    """Open the stream listeners and put their transports in ``server.transports``.

    With any stream listener, ws and wss transports exist even without ws/wss listeners: a
    connection upgraded to WebSocket on a tcp/tls listener sends through them.
    """
    table = ConnTable()
    wanted = {p: [s for s in server.listeners if s.proto == p] for p in STREAM_TRANSPORTS}
    if not any(wanted.values()):
        return
    for proto, cls in STREAM_TRANSPORTS.items():
        if not wanted[proto] and proto in ("tcp", "tls"):
            continue
        t = cls(server, wanted[proto], server.reuse_port, table)
        await nursery.start(t.serve)
        server.transports[proto] = t
    if hooks(server).ws_accept is not None:
        # WebSocket upgrades on tcp/tls listeners: name those sockets for ws/wss too, so a
        # request from elsewhere (UDP) to a WebSocket client finds a socket for its Via
        for plain, ws in (("tcp", "ws"), ("tls", "wss")):
            base, wt = server.transports.get(plain), server.transports.get(ws)
            if base is not None and wt is not None and not wt.sockets:
                wt.sockets = [dataclasses.replace(s, proto=ws) for s in base.sockets]
