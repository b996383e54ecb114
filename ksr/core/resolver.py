"""Where a SIP URI sends to (RFC 3263), without ever blocking the event loop.

``Resolver.now(uri)`` answers at once from what is known without asking anyone: IP literals,
RFC 6761 special names (``localhost``, ``*.invalid``) and the cache. When it says ``ASK``, the
caller goes on and ``Resolver.lookup(uri)`` (a trio task, bounded by ``dns_timeout``) asks the
name servers with dnspython's async resolver: NAPTR (``dns_try_naptr``), then SRV, then A/AAAA.
One resolution per URI shape is in flight at a time; callers asking for the same one wait for it.
Answers are kept per server (never module-wide) for the TTL of the records they came from.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import trio

from .context import Destination
from .resolve_now import (
    ASK,
    MAX_ENTRIES,
    KnownAnswers,
    Query,
    default_port,
    default_proto,
    parse_query,
    with_uri,
)

if TYPE_CHECKING:
    from .config import CoreParams
    from .hosts import HostTable

__all__ = [
    "ASK",
    "MAX_ENTRIES",
    "Query",
    "Resolver",
    "default_port",
    "default_proto",
    "parse_query",
]

log = logging.getLogger("ksr.dns")

# RFC 3263 §4.1 NAPTR services and the transport each stands for; SRV prefixes by transport
NAPTR_SERVICES = {"sip+d2u": "udp", "sip+d2t": "tcp", "sips+d2t": "tls"}
SRV_PREFIX = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}


def srv_order(records: list[Any], balance: bool, rng: random.Random) -> list[Any]:
    """RFC 2782: lowest priority first; within one priority a weighted random order when
    ``balance`` (dns_srv_lb), else the heaviest first."""
    out: list[Any] = []
    for prio in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == prio]
        if not balance:
            out.extend(sorted(group, key=lambda r: -r.weight))
            continue
        while group:
            group.sort(key=lambda r: r.weight != 0)  # zero weights first (RFC 2782)
            pick = rng.randint(0, sum(r.weight for r in group))
            acc = 0
            chosen = group[-1]
            for r in group:
                acc += r.weight
                if acc >= pick:
                    chosen = r
                    break
            out.append(chosen)
            group.remove(chosen)
    return out


def read_hosts_file(path: str) -> dict[str, str]:
    """name -> first address of a hosts(5) file (IPv4 lines win over IPv6 for a name);
    a missing or unreadable file gives no names."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return {}
    names: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        addr = fields[0]
        for name in fields[1:]:
            key = name.lower()
            if key not in names or (":" in names[key] and ":" not in addr):
                names[key] = addr
    return names


def _first(found: list[Destination]) -> Destination | None:
    return found[0] if found else None


class Resolver:
    """RFC 3263 resolution and its cache for one server."""

    def __init__(self, core: CoreParams, hosts: HostTable, protos: set[str]) -> None:
        self.hosts = hosts
        self.protos = protos  # transports we have listeners for (read at lookup time)
        self.timeout = core.dns_timeout
        self.try_naptr = core.dns_try_naptr
        self.srv_lb = core.dns_srv_lb
        self.try_ipv6 = core.dns_try_ipv6
        self.use_cache = core.use_dns_cache
        self.min_ttl = core.dns_cache_min_ttl
        self.max_ttl = core.dns_cache_max_ttl
        self.neg_ttl = core.dns_neg_cache_ttl
        self.servers = list(core.dns_servers)
        self.rng = random.Random()
        # resolutions under way: the event is set once the answers (the list) are in
        self._inflight: dict[Query, tuple[trio.Event, list[Destination]]] = {}
        self._dns: dns.asyncresolver.Resolver | None = None
        # names of the hosts file answer before DNS, as the system resolver would; the cache
        # and the hosts file are read by the compiled synchronous half (resolve_now.py)
        static = read_hosts_file(core.dns_hosts_file) if core.dns_hosts_file else {}
        self.known = KnownAnswers(hosts, static)

    def query(self, uri: str) -> Query | None:
        """``parse_query(uri)``, remembered (a Query is immutable; the table is bounded)."""
        return self.known.query(uri)

    # -- at once ---------------------------------------------------------------------------
    def now(self, uri: str) -> Destination | None | str:
        """The destination if it is known without asking (literal, special name, cached);
        None if the URI cannot be resolved; ``ASK`` if the name servers must be asked."""
        found = self.now_all(uri)
        return found if isinstance(found, str) else _first(found)

    def now_all(self, uri: str) -> list[Destination] | str:
        """Every destination of ``uri`` in RFC 3263 order (the first one is ``now``'s), if known
        without asking; an empty list if the URI cannot be resolved; ``ASK`` otherwise."""
        return self.known.now_all(uri)

    # -- asking ------------------------------------------------------------------------------
    async def lookup(self, uri: str) -> Destination | None:
        """Resolve ``uri`` through DNS (at most ``dns_timeout`` seconds); None if it fails."""
        return _first(await self.lookup_all(uri))

    async def lookup_all(self, uri: str) -> list[Destination]:
        """Every destination of ``uri`` in RFC 3263 order (SRV priority and weight, then the
        addresses of each target), through DNS if needed; empty if it fails."""
        known = self.now_all(uri)
        if not isinstance(known, str):
            return known
        q = self.query(uri)
        assert q is not None
        waiting = self._inflight.get(q)
        if waiting is not None:  # someone is already asking: share the answer
            await waiting[0].wait()
            return with_uri(tuple(waiting[1]), uri)
        done, shared = self._inflight[q] = (trio.Event(), [])
        answers: tuple[Destination, ...] = ()
        ttl = float(self.neg_ttl)
        try:
            with trio.move_on_after(self.timeout):
                found, min_ttl = await self._rfc3263(q)
                if found:
                    answers = tuple(found)
                    ttl = float(min(max(min_ttl, self.min_ttl), self.max_ttl))
            if not answers:
                log.warning("cannot resolve %s", q.host)
            if self.use_cache:
                self._remember(q, answers, ttl)
            shared.extend(answers)
        finally:
            del self._inflight[q]
            done.set()
        return with_uri(answers, uri)

    def _remember(self, q: Query, answers: tuple[Destination, ...], ttl: float) -> None:
        self.known.remember(q, answers, ttl)

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if self._dns is None:
            if self.servers:
                r = dns.asyncresolver.Resolver(configure=False)
                servers: list[dns.nameserver.Nameserver | str] = []
                for spec in self.servers:
                    host, port = spec, 53
                    if spec.count(":") == 1 or spec.startswith("["):
                        h, _, p = spec.rpartition(":")
                        host, port = h.strip("[]"), int(p)
                    servers.append(dns.nameserver.Do53Nameserver(host, port))
                r.nameservers = servers
            else:
                r = dns.asyncresolver.Resolver()  # /etc/resolv.conf
            r.cache = None  # ours keeps per-URI answers with their TTL
            self._dns = r
        return self._dns

    async def _query(self, name: str, rdtype: str) -> tuple[list[Any], int]:
        """The records of one type (empty when there are none) and their TTL."""
        try:
            ans = await self._resolver().resolve(
                name, rdtype, raise_on_no_answer=False, lifetime=self.timeout
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers, dns.resolver.NoAnswer):
            return [], self.neg_ttl
        except dns.exception.DNSException as err:
            log.debug("DNS %s %s: %s", rdtype, name, err)
            return [], self.neg_ttl
        if ans.rrset is None:
            return [], self.neg_ttl
        return list(ans.rrset), ans.rrset.ttl

    async def _addresses(self, name: str) -> tuple[list[str], int]:
        ips, ttl = await self._query(name, "A")
        out = [r.address for r in ips]
        if self.try_ipv6:
            ips6, ttl6 = await self._query(name, "AAAA")
            out.extend(r.address for r in ips6)
            ttl = min(ttl, ttl6) if out else ttl6
        return out, ttl

    async def _srv(self, name: str, proto: str) -> tuple[list[Destination], int]:
        records, ttl = await self._query(name, "SRV")
        out: list[Destination] = []
        for r in srv_order(records, self.srv_lb, self.rng):
            target = r.target.to_text(omit_final_dot=True)
            if target in ("", "."):
                continue  # "service not available here" (RFC 2782)
            ips, ttl_a = await self._addresses(target)
            ttl = min(ttl, ttl_a) if ips else ttl
            out.extend(Destination(proto, ip, r.port) for ip in ips)
        return out, ttl

    async def _rfc3263(self, q: Query) -> tuple[list[Destination], int]:
        if q.port is not None:  # §4.2: an explicit port means A/AAAA only
            proto = default_proto(q)
            ips, ttl = await self._addresses(q.host)
            return [Destination(proto, ip, q.port) for ip in ips], ttl
        if q.proto is None and self.try_naptr:
            found, ttl = await self._naptr(q)
            if found:
                return found, ttl
        if q.proto is not None:
            candidates = [q.proto]
        elif q.secure:
            candidates = ["tls"]
        else:  # §4.1: SRV for the transports we support, UDP first
            candidates = [p for p in ("udp", "tcp") if p in self.protos] or ["udp"]
        for proto in candidates:
            prefix = SRV_PREFIX.get(proto)
            if prefix is None:
                continue
            found, ttl = await self._srv(prefix + q.host, proto)
            if found:
                return found, ttl
        proto = default_proto(q)
        ips, ttl = await self._addresses(q.host)
        return [Destination(proto, ip, default_port(proto)) for ip in ips], ttl

    async def _naptr(self, q: Query) -> tuple[list[Destination], int]:
        records, ttl = await self._query(q.host, "NAPTR")
        usable = []
        for r in records:
            service = r.service.decode("ascii", "replace").lower()
            proto = NAPTR_SERVICES.get(service)
            if r.flags.lower() != b"s" or proto is None or proto not in self.protos:
                continue
            if q.secure and proto != "tls":
                continue  # RFC 3263 §4.1: a SIPS URI needs TLS
            usable.append((r.order, r.preference, proto, r.replacement))
        for _order, _pref, proto, replacement in sorted(usable, key=lambda x: (x[0], x[1])):
            found, ttl_srv = await self._srv(replacement.to_text(omit_final_dot=True), proto)
            if found:
                return found, min(ttl, ttl_srv)
        return [], ttl
