"""What modules give the transports: typed hooks instead of modules looked up by name.

A module registers its hook in ``init`` (``hooks(self.server).http = self.handle_request``);
the transports call the hook, or do without when none is set:

* ``http``: a complete HTTP request on a SIP TCP/TLS connection (xhttp). Returns False when
  the handler failed (the client gets 500 if nothing was answered, else 404).
* ``ws_accept``: a WebSocket handshake on a ws/wss listener (websocket); without it the
  transport answers the handshake itself with the ``sip`` sub-protocol.
* ``ws_closed``: a WebSocket connection ended (websocket).
* ``tls``: the TLS contexts of listeners and outbound connections (tls).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    from .http import HttpExchange
    from .stream import Connection
    from .ws import WsHandler


class TlsContexts(Protocol):
    def server_context(self) -> ssl.SSLContext:
        """For accepted connections (OSError when no certificate is set)."""
        ...

    def client_context(self) -> ssl.SSLContext:
        """For outbound connections."""
        ...

    def server_name(self) -> str:
        """The SNI name to send; empty: the target host name."""
        ...


HttpHandler = Callable[["HttpExchange"], bool]
WsAccept = Callable[["HttpExchange"], object]
WsClosed = Callable[["Connection", "WsHandler"], None]


@dataclass(slots=True)
class TransportHooks:
    http: HttpHandler | None = None
    ws_accept: WsAccept | None = None
    ws_closed: WsClosed | None = None
    tls: TlsContexts | None = None


_HOOKS: WeakKeyDictionary[object, TransportHooks] = WeakKeyDictionary()


def hooks(server: object) -> TransportHooks:
    """The transport hooks of ``server`` (empty until modules set them)."""
    found = _HOOKS.get(server)
    if found is None:
        found = _HOOKS[server] = TransportHooks()
    return found
