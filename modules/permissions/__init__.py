"""permissions: the address table (KSR.permissions, permissions.* RPC).

Entries (group, IP or subnet, port, tag) come from the ``address`` table of ``db_url`` (through
``ksr.db``, Kamailio's columns) and/or from ``address_file``; both are read at start-up and on
``permissions.addressReload``; with worker processes the worker that reloads gives the list it
read to every other worker (a shared table). Port 0 matches any port. The trusted table (``allow_trusted``) is
not supported.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.replication import replicated
from ksr.core.rpc import RpcError, rpc
from ksr.db import DbError, TableSpec, store_for
from ksr.db.kamailio import ADDRESS
from ksr.kemi.registry import kemi

log = logging.getLogger("ksr.permissions")

# ksr's own layout (Redis, layout=ksr); SQL stores use Kamailio's address table (version 6)
ADDRESS_SPEC = TableSpec(
    "address",
    key="id",
    fields=(
        ("id", "int"),
        ("grp", "int"),
        ("ip_addr", "str"),
        ("mask", "int"),
        ("port", "int"),
        ("tag", "str"),
    ),
    version=1,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PermissionsParams(ModParams):
    db_url: str = ""
    address_table: str = "address"
    address_file: str = ""
    db_mode: int = 0


class LoadError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Entry:
    grp: int
    net: Network
    port: int
    tag: str

    @property
    def is_host(self) -> bool:
        return self.net.prefixlen == self.net.max_prefixlen


def make_entry(grp: object, ip: object, mask: object, port: object, tag: object) -> Entry:
    """An entry from Kamailio's columns; mask None means a single host. ValueError if bad."""
    addr = ipaddress.ip_address(str(ip).strip().strip("[]"))
    bits = addr.max_prefixlen if mask is None or mask == "" else int(str(mask))
    net = ipaddress.ip_network(f"{addr}/{bits}", strict=False)
    return Entry(int(str(grp)), net, int(str(port or 0)), "" if tag is None else str(tag))


def parse_line(line: str) -> Entry | None:
    """``grp ip[/mask] [port [tag]]``; None for blank lines and ``#`` comments."""
    line = line.split("#", 1)[0].strip()
    if not line:
        return None
    parts = line.split(None, 3)
    if len(parts) < 2:
        raise ValueError("expected: group ip[/mask] [port [tag]]")
    ip, _, mask = parts[1].partition("/")
    port = parts[2] if len(parts) > 2 else 0
    tag = parts[3] if len(parts) > 3 else ""
    return make_entry(parts[0], ip, mask or None, port, tag)


def _addr(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        a = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


class Permissions(Module):
    name = "permissions"
    Params = PermissionsParams

    def init(self) -> None:
        self.entries: list[Entry] = []
        try:
            self.entries = self.load()
        except LoadError as err:
            from ksr.core.config import ConfigError

            raise ConfigError(f"[modparam.permissions] {err}", self.server.config.source) from None
        self.share("permissions:address", self)

    @replicated
    def set_entries(self, rows: list[tuple[int, str, int, int, str]]) -> None:
        """Use these entries (group, network address, prefix length, port, tag)."""
        self.entries = [make_entry(g, ip, mask, port, tag) for g, ip, mask, port, tag in rows]

    def replica_snapshot(self) -> list[tuple[int, str, int, int, str]]:
        return _rows(self.entries)

    def replica_restore(self, state: list[tuple[int, str, int, int, str]]) -> None:
        self.set_entries.__wrapped__(self, state)  # type: ignore[attr-defined]

    def load(self) -> list[Entry]:
        """Every entry of the database table and the file, in that order. LoadError if either
        cannot be read (the entries in use are then kept)."""
        p = self.params
        out: list[Entry] = []
        if p.db_url:
            try:
                store = store_for(self.server, p.db_url)
                spec = ADDRESS.spec() if store.layout == "kamailio" else ADDRESS_SPEC
                rows = store.table(spec.renamed(p.address_table)).all()
            except DbError as err:
                raise LoadError(f"address table {p.address_table!r}: {err}") from None
            for row in rows:
                try:
                    out.append(
                        make_entry(row["grp"], row["ip_addr"], row["mask"], row["port"], row["tag"])
                    )
                except (ValueError, TypeError) as err:
                    log.error("permissions: bad address row %s: %s", row.get("id"), err)
        if p.address_file:
            try:
                text = Path(p.address_file).read_text()
            except OSError as err:
                raise LoadError(f"address_file: {err}") from None
            for n, line in enumerate(text.splitlines(), 1):
                try:
                    e = parse_line(line)
                except ValueError as err:
                    raise LoadError(f"address_file {p.address_file}:{n}: {err}") from None
                if e is not None:
                    out.append(e)
        return out

    def match(self, ip: str, port: int, grp: int | None) -> Entry | None:
        """The first entry (of ``grp``, or any group) holding ip and port; host entries first."""
        a = _addr(ip)
        if a is None:
            return None
        found: Entry | None = None
        for e in self.entries:
            if grp is not None and e.grp != grp:
                continue
            if e.port not in (0, port) or a.version != e.net.version or a not in e.net:
                continue
            if e.is_host:
                return e
            if found is None:
                found = e
        return found

    # -- KSR.permissions ---------------------------------------------------------------------------
    @kemi()
    def allow_source_address(self, ctx: MsgContext, group: int) -> int:
        """allow_source_address(group): 1 if the source IP and port are in the address group."""
        return 1 if self.match(ctx.src_ip, ctx.src_port, group) else -1

    @kemi()
    def allow_address(self, ctx: MsgContext, group: int, ip: str, port: int) -> int:
        """allow_address(group, ip, port): 1 if ip and port are in the address group."""
        return 1 if self.match(ip, port, group) else -1

    @kemi()
    def allow_source_address_group(self, ctx: MsgContext) -> int:
        """The group of the first entry holding the source IP and port, -1 if none."""
        e = self.match(ctx.src_ip, ctx.src_port, None)
        return e.grp if e else -1

    @kemi()
    def allow_address_group(self, ctx: MsgContext, ip: str, port: int) -> int:
        """allow_address_group(ip, port): the group of the first entry holding them, -1 if none."""
        e = self.match(ip, port, None)
        return e.grp if e else -1

    # -- RPC ----------------------------------------------------------------------------------------
    @rpc("permissions.addressReload")
    def rpc_reload(self) -> str:
        """permissions.addressReload: read the address table (and address_file) again."""
        try:
            entries = self.load()
        except LoadError as err:
            raise RpcError(500, f"Reload failed: {err}") from None
        self.set_entries(_rows(entries))
        return "Ok. Reload successful."

    @rpc("permissions.addressDump")
    def rpc_address_dump(self) -> list[dict[str, object]]:
        """permissions.addressDump: the single-address entries."""
        return [
            {"gid": e.grp, "ip": str(e.net.network_address), "port": e.port, "tag": e.tag}
            for e in self.entries
            if e.is_host
        ]

    @rpc("permissions.subnetDump")
    def rpc_subnet_dump(self) -> list[dict[str, object]]:
        """permissions.subnetDump: the subnet entries."""
        return [
            {
                "id": i,
                "grp": e.grp,
                "ip_addr": str(e.net.network_address),
                "mask": e.net.prefixlen,
                "port": e.port,
                "tagv": e.tag,
            }
            for i, e in enumerate(e for e in self.entries if not e.is_host)
        ]


def _rows(entries: list[Entry]) -> list[tuple[int, str, int, int, str]]:
    return [(e.grp, str(e.net.network_address), e.net.prefixlen, e.port, e.tag) for e in entries]


MODULE = Permissions
