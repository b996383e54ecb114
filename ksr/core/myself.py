""" "Is this me?": the addresses, Vias and URIs that name this server (Kamailio's myself).

A host is this server when it is one of its listening addresses (or their advertised ones)
with a matching port, or one of ``core.alias``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ksr.sip.uri import parse_uri

if TYPE_CHECKING:
    from .server import Server


class Myself:
    """The "myself" checks; reads the server's listeners (they change once, when it starts)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def is_local_ip(self, ip: str) -> bool:
        server = self.server
        return ip in server.local_ips or any(s.ip == ip for s in server.listeners)

    def is_myself_addr(self, host: str, port: int | None, proto: str | None = None) -> bool:
        h = host.lower().strip("[]")
        for s in self.server.listeners:
            if (h == s.ip or h == s.adv_ip) and (port is None or port in (s.port, s.adv_port)):
                if proto is None or proto == s.proto:
                    return True
        for ah, ap in self.server.aliases:
            if h == ah and (ap is None or port is None or port == ap):
                return True
        return False

    def is_myself_via(self, host: str, port: int | None) -> bool:
        return self.is_myself_addr(host, port or 5060) or self.is_myself_addr(host, port)

    def is_myself_text(self, text: str) -> bool:
        """A URI (``sip:``/``sips:``, in <> or not) or a bare host naming this server."""
        t = text.strip()
        if t.startswith("<") and t.endswith(">"):
            t = t[1:-1]
        if ":" in t and t.split(":", 1)[0].lower() in ("sip", "sips"):
            try:
                u = parse_uri(t)
            except Exception:
                return False
            port = u.port if u.port is not None else (5061 if u.scheme == "sips" else None)
            if port is None:
                return self.is_myself_addr(u.host, 5060) or any(
                    h == u.host and p is None for h, p in self.server.aliases
                )
            return self.is_myself_addr(u.host, port)
        return self.is_myself_addr(t, None)
