"""Host, port and ``proto:host:port`` address strings, written the way Kamailio writes them."""

from __future__ import annotations

PROTOS = ("udp", "tcp", "tls", "ws", "wss", "sctp")


def split_proto(spec: str) -> tuple[str | None, str]:
    """``"udp:host:port"`` -> ``("udp", "host:port")``; without a known proto, ``(None, spec)``."""
    head, colon, rest = spec.partition(":")
    if colon and head.lower() in PROTOS:
        return head.lower(), rest
    return None, spec


def bracket_host(host: str) -> str:
    """The host as a URI or Via writes it: an IPv6 address inside brackets (added once)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def format_hostport(host: str, port: int | str | None) -> str:
    """``host:port`` (just the host without a port), an IPv6 host in brackets."""
    h = bracket_host(host)
    return h if port is None else f"{h}:{port}"
