"""Sending bytes: the one way out of the server (``Server.send``) and the socket to send from.

Every message leaves through ``Sender.send``: it refuses forbidden and unresolved targets,
shows the bytes to the send taps (siptrace), gives a stream message to the worker holding its
connection, else hands it to the transport of its protocol.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .context import Destination, MsgContext, SocketInfo

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("ksr")


class Sender:
    """``Server.send`` and ``Server.socket_for``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.hosts = server.hosts
        # the server's own list and table, never replaced (siptrace appends to the list, the
        # transports are added as they start): read here without an attribute lookup on the
        # interpreted Server per message sent
        self.send_taps = server.send_taps
        self.transports = server.transports

    def send(
        self, dest: Destination, data: bytes, sock: SocketInfo | None = None, conn_id: int = 0
    ) -> bool:
        server = self.server
        if self.hosts.forbidden(dest.host):
            log.warning("refusing to send to %s:%d", dest.host, dest.port)
            return False
        if not self.hosts.is_ip(dest.host):
            # every next hop is resolved before it gets here; a name here came from a message
            # (a forged Via or received=): the socket would look it up, blocking, in DNS
            server.bad_input.warning(
                "refusing to send to %s:%d: a host name where an address belongs",
                dest.host[:64],
                dest.port,
            )
            return False
        taps = self.send_taps
        if taps:
            for tap in taps:
                tap(dest, data, sock)
        handoff = server.handoff
        if handoff is not None and dest.proto != "udp" and handoff.send_remote(dest, data, conn_id):
            return True  # over a stream connection another worker holds
        t = self.transports.get(dest.proto)
        if t is None:
            log.error("no %s listener to send to %s:%d", dest.proto, dest.host, dest.port)
            return False
        try:
            return bool(t.send(data, dest.host, dest.port, sock, conn_id))
        except OSError as err:
            log.warning("send to %s:%s:%d failed: %s", dest.proto, dest.host, dest.port, err)
            return False

    def socket_for(self, proto: str, ctx: MsgContext | None = None) -> SocketInfo | None:
        """The socket to send ``proto`` from: the one the script chose, the one the message
        came on, else the first listener of that protocol."""
        if ctx is not None and ctx.send_socket is not None and ctx.send_socket.proto == proto:
            return ctx.send_socket
        if ctx is not None and ctx.socket.proto == proto:
            return ctx.socket
        for s in self.server.listeners:
            if s.proto == proto:
                return s
        return None
