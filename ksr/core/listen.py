"""The addresses a server listens on and answers to: ``core.listen`` and ``core.alias``."""

from __future__ import annotations

from .context import SocketInfo

PROTOS = ("udp", "tcp", "tls", "ws", "wss")


def parse_listen(spec: str) -> SocketInfo:
    """``udp:127.0.0.1:5060`` (also ``udp:[::1]:5060``, ``127.0.0.1`` = udp:...:5060)."""
    s = spec.strip()
    proto = "udp"
    if ":" in s and s.split(":", 1)[0].lower() in PROTOS:
        proto, s = s.split(":", 1)
        proto = proto.lower()
    name = ""
    if " name " in s:
        s, _, name = s.partition(" name ")
        name = name.strip().strip('"')
    adv_ip = adv_port = None
    if " advertise " in s:
        s, _, adv = s.partition(" advertise ")
        ah, _, ap = adv.strip().rpartition(":") if ":" in adv else (adv.strip(), "", "")
        adv_ip, adv_port = (ah or adv.strip()), (int(ap) if ap.isdigit() else None)
    s = s.strip()
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 5060
    elif s.count(":") == 1:
        host, _, p = s.partition(":")
        port = int(p)
    else:
        host, port = s, (5061 if proto in ("tls", "wss") else 5060)
    if not host:
        raise ValueError(f"bad listen address {spec!r}")
    return SocketInfo(proto, host, port, name, adv_ip, adv_port)


def parse_alias(alias: str) -> tuple[str, int | None]:
    """``host`` or ``host:port`` of ``core.alias``: the host lowered, the port None if absent."""
    host, _, port = alias.rpartition(":") if alias.count(":") == 1 else (alias, "", "")
    return (host or alias).lower(), int(port) if port.isdigit() else None
