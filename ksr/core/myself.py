""" "Is this me?": the addresses, Vias and URIs that name this server (Kamailio's myself).

A host is this server when it is one of its listening addresses (or their advertised ones)
with a matching port, or one of ``core.alias``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ksr.sip.uri import parse_uri

if TYPE_CHECKING:
    from .context import SocketInfo
    from .server import Server

# the ports of an alias without one: any (by identity)
ANY_PORT: Final[frozenset[int]] = frozenset()


class Myself:
    """The "myself" checks, through tables made from the server's listeners and aliases the
    first time they are asked after these change. ``serve()`` replaces the listeners once
    (the sockets it opened, a port 0 then the one the kernel chose); the listener list and
    the alias set are replaced, never changed in place. tm, rr and the pipeline ask ~6 times
    per call."""

    def __init__(self, server: Server) -> None:
        self.server = server
        # what the tables were made of (None: not made yet)
        self._listeners: list[SocketInfo] | None = None
        self._aliases: set[tuple[str, int | None]] | None = None
        self._ips: frozenset[str] = frozenset()  # the listeners' own addresses
        # host (a listener's, its advertised one, an alias) -> its ports; ANY_PORT for an
        # alias without a port
        self._ports: dict[str, frozenset[int]] = {}
        self._host_protos: frozenset[tuple[str, str]] = frozenset()  # listeners'
        self._host_port_protos: frozenset[tuple[str, int, str]] = frozenset()  # listeners'
        self._alias_ports: dict[str, frozenset[int]] = {}  # the aliases alone
        # is_myself_text's answers by "scheme:hostport" (URIs with parameters; made anew with
        # the tables, bounded: the texts come from peers)
        self._uri_answers: dict[str, bool] = {}

    def _make_tables(self) -> None:
        server = self.server
        listeners, aliases = server.listeners, server.aliases
        ports: dict[str, set[int]] = {}
        host_protos: set[tuple[str, str]] = set()
        host_port_protos: set[tuple[str, int, str]] = set()
        for s in listeners:
            for h in (s.ip, s.adv_ip):
                host_protos.add((h, s.proto))
                for p in (s.port, s.adv_port):
                    ports.setdefault(h, set()).add(p)
                    host_port_protos.add((h, p, s.proto))
        alias_ports: dict[str, set[int]] = {}
        any_port: set[str] = set()
        for ah, ap in aliases:
            if ap is None:
                any_port.add(ah)
            else:
                alias_ports.setdefault(ah, set()).add(ap)
                ports.setdefault(ah, set()).add(ap)
        self._ports = {h: frozenset(p) for h, p in ports.items()}
        self._alias_ports = {h: frozenset(p) for h, p in alias_ports.items()}
        for ah in any_port:
            self._ports[ah] = self._alias_ports[ah] = ANY_PORT
        self._ips = frozenset(s.ip for s in listeners)
        self._host_protos = frozenset(host_protos)
        self._host_port_protos = frozenset(host_port_protos)
        self._listeners, self._aliases = listeners, aliases
        self._uri_answers = {}

    def is_local_ip(self, ip: str) -> bool:
        server = self.server
        if server.listeners is not self._listeners or server.aliases is not self._aliases:
            self._make_tables()
        return ip in server.local_ips or ip in self._ips

    def is_myself_addr(self, host: str, port: int | None, proto: str | None = None) -> bool:
        """``host`` (any case, an IPv6 address in [] or not) is a listener's address or its
        advertised one and ``port`` (None: any) one of its ports, on ``proto`` (None: any);
        or an alias, with its port if it has one (on any transport)."""
        server = self.server
        if server.listeners is not self._listeners or server.aliases is not self._aliases:
            self._make_tables()
        h = host.lower().strip("[]")
        if proto is None:
            ports = self._ports.get(h)
            return ports is not None and (port is None or ports is ANY_PORT or port in ports)
        ports = self._alias_ports.get(h)
        if ports is not None and (port is None or ports is ANY_PORT or port in ports):
            return True
        if port is None:
            return (h, proto) in self._host_protos
        return (h, port, proto) in self._host_port_protos

    def is_myself_via(self, host: str, port: int | None) -> bool:
        if port:
            return self.is_myself_addr(host, port)
        return self.is_myself_addr(host, 5060) or self.is_myself_addr(host, port)

    def is_myself_text(self, text: str) -> bool:
        """A URI (``sip:``/``sips:``, in <> or not) or a bare host naming this server."""
        t = text.strip()
        if t.startswith("<") and t.endswith(">"):
            t = t[1:-1]
        if ":" in t and t.split(":", 1)[0].lower() in ("sip", "sips"):
            semi = t.find(";")
            if semi > 0 and _plain_uri(t):
                # A Record-Route or Route URI of ours differs per call only in its parameters
                # (;ftag=...), which cannot change the answer: it is kept by scheme:hostport
                # (dialog asks for the 2xx's Record-Route, a full parse each time otherwise)
                server = self.server
                if server.listeners is not self._listeners or server.aliases is not self._aliases:
                    self._make_tables()
                key = t[:semi]
                answers = self._uri_answers
                hit = answers.get(key)
                if hit is None:
                    hit = self.is_myself_text(key)
                    if len(answers) >= 256:
                        answers.clear()
                    answers[key] = hit
                return hit
            try:
                u = parse_uri(t)
            except Exception:
                return False
            port = u.port if u.port is not None else (5061 if u.scheme == "sips" else None)
            if port is None:
                return (
                    self.is_myself_addr(u.host, 5060) or self._alias_ports.get(u.host) is ANY_PORT
                )
            return self.is_myself_addr(u.host, port)
        return self.is_myself_addr(t, None)


def _plain_uri(t: str) -> bool:
    """A SIP URI whose host and port are all before its first ``;`` and whose parameters
    cannot make ``parse_uri`` fail: no userinfo (a ``;`` may be in it), no headers, none of the
    characters parse_uri refuses."""
    return (
        "@" not in t
        and "?" not in t
        and " " not in t
        and "<" not in t
        and ">" not in t
        and t.isprintable()
    )
