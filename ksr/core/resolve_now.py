"""The synchronous half of ``ksr.core.resolver``: what a SIP URI sends to when that is known
without asking a name server (IP literals, RFC 6761 special names, the hosts file, the cache).
Compiled (ksr/native.py): every relayed request and the 2xx's ACK ask it (~3 times per call);
the DNS lookups, trio tasks, stay in resolver.py."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ksr.sip.uri import parse_uri

from .context import Destination

if TYPE_CHECKING:
    from .hosts import HostTable

MAX_ENTRIES: Final = 4096  # a full cache starts over (hostile input cannot grow it)
ASK: Final = "ask"  # KnownAnswers.now_all(): the answer needs the name servers


@dataclass(frozen=True, slots=True)
class Query:
    """What RFC 3263 needs from a URI: the host to resolve and what the URI fixes."""

    host: str  # maddr or host, brackets stripped, lower case
    port: int | None  # explicit port (then no SRV, RFC 3263 §4.2)
    proto: str | None  # explicit transport (transport= param), None = DNS may choose
    secure: bool  # sips: scheme


def parse_query(uri: str) -> Query | None:
    try:
        u = parse_uri(uri)
    except Exception:
        return None
    if not u.is_sip:
        return None
    host = (u.params.get("maddr") or u.host).strip("[]").lower().rstrip(".")
    if not host:
        return None
    proto = u.transport.lower() if u.transport else None
    secure = u.scheme == "sips"
    return Query(host, u.port, proto, secure)


def default_proto(q: Query) -> str:
    return q.proto or ("tls" if q.secure else "udp")


def default_port(proto: str) -> int:
    return 5061 if proto in ("tls", "wss") else 5060


def with_uri(answers: tuple[Destination, ...], uri: str) -> list[Destination]:
    return [Destination(d.proto, d.host, d.port, uri) for d in answers]


class KnownAnswers:
    """One server's answers known without DNS: its cache of DNS answers (by Query, with their
    expiry on ``time.monotonic``), the hosts file's names, and parsed URIs."""

    def __init__(self, hosts: HostTable, static: dict[str, str]) -> None:
        self.hosts = hosts
        self.static = static  # names of the hosts file answer before DNS
        self.cache: dict[Query, tuple[float, tuple[Destination, ...]]] = {}
        # parse_query answers by URI text: a proxy resolves the same few next hops for every
        # message, and parsing the URI each time was ~3% of a relayed call's CPU
        self.queries: dict[str, Query | None] = {}

    def query(self, uri: str) -> Query | None:
        """``parse_query(uri)``, remembered (a Query is immutable; the table is bounded)."""
        queries = self.queries
        if uri in queries:
            return queries[uri]
        q = parse_query(uri)
        if len(queries) >= MAX_ENTRIES:
            queries.clear()
        queries[uri] = q
        return q

    def now_all(self, uri: str) -> list[Destination] | str:
        """Every destination of ``uri`` in RFC 3263 order, if known without asking; an empty
        list if the URI cannot be resolved; ``ASK`` otherwise."""
        q = self.query(uri)
        if q is None:
            return []
        proto = default_proto(q)
        host = q.host
        port = q.port
        if self.hosts.is_ip(host):
            return [Destination(proto, host, port or default_port(proto), uri)]
        if host == "localhost" or host.endswith(".localhost"):  # RFC 6761 §6.3
            return [Destination(proto, "127.0.0.1", port or default_port(proto), uri)]
        if host == "invalid" or host.endswith(".invalid"):  # RFC 6761 §6.4
            return []
        static = self.static.get(host)
        if static is not None:
            return [Destination(proto, static, port or default_port(proto), uri)]
        hit = self.cache.get(q)
        if hit is not None and hit[0] > time.monotonic():
            return with_uri(hit[1], uri)
        return ASK

    def now(self, uri: str) -> Destination | None | str:
        """``now_all``'s first destination (None: cannot be resolved), or ``ASK``."""
        found = self.now_all(uri)
        if isinstance(found, str):
            return found
        return found[0] if found else None

    def remember(self, q: Query, answers: tuple[Destination, ...], ttl: float) -> None:
        cache = self.cache
        if len(cache) >= MAX_ENTRIES:
            cache.clear()
        cache[q] = (time.monotonic() + ttl, answers)
