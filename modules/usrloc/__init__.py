"""usrloc: the location service (bindings of addresses-of-record), used by registrar.

Like Kamailio's usrloc it exports no KSR functions: registrar calls its API
(``domain(name)``, ``Domain.get/put/remove``). RPC: ul.dump, ul.lookup, ul.rm, ul.rm_contact,
ul.add, ul.flush (and the ul.db_* queries).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio
from pydantic import field_validator

from ksr.core.module import ModParams, Module
from ksr.core.rpc import RpcError, rpc
from ksr.core.stats import ONE
from ksr.db import DEFAULT_DB_URL, DbError, SchemaMismatch, Store, store_for

from .api import UsrlocApi
from .contact import ALL_METHODS, Contact, RuidMaker
from .domain import Domain, UsrlocError
from .rpc_shapes import contact_info, domain_dump, order_key

__all__ = ["Contact", "Domain", "Usrloc", "UsrlocApi", "UsrlocError"]

log = logging.getLogger("ksr.usrloc")

COUNTS_CACHE = 5.0  # seconds the db_mode 3 statistics keep one count of the table


class UsrlocParams(ModParams):
    db_url: str = DEFAULT_DB_URL
    db_mode: int = 0
    timer_interval: int = 60
    preload: list[str] = []
    use_domain: int = 0
    nat_bflag: int = -1
    desc_time_order: int = 0
    matching_mode: int = 0
    hash_size: int = 10
    server_id: int = 0
    # 1: load (db_mode 1, 2) and expire (db_mode 3) only this node's rows (their server_id)
    server_id_filter: int = 0

    @field_validator("preload", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("db_mode")
    @classmethod
    def _mode(cls, v: int) -> int:
        if v not in (0, 1, 2, 3):
            raise ValueError("db_mode must be 0, 1, 2 or 3")
        return v

    @field_validator("timer_interval")
    @classmethod
    def _interval(cls, v: int) -> int:
        if v < 1:
            raise ValueError("timer_interval must be at least 1 second")
        return v


class Usrloc(Module):
    name = "usrloc"
    Params = UsrlocParams

    def __init__(self, server: Any, params: UsrlocParams) -> None:
        super().__init__(server, params)
        self.params: UsrlocParams = params
        self.domains: dict[str, Domain] = {}
        self.ruids = RuidMaker(self.server_id)
        self.now: Callable[[], float] = time.time  # tests may move time forward
        self.expired_callbacks: list[Callable[[str, Contact], None]] = []
        self._timer_busy = False
        self._counts: dict[str, tuple[float, int, int]] = {}  # db_mode 3: (when, users, contacts)
        self._api = UsrlocApi(self)

    def api(self) -> UsrlocApi:
        return self._api

    @property
    def server_id(self) -> int:
        """This node's id for the rows it writes: the modparam, else core ``server_id``."""
        return self.params.server_id or self.server.config.core.server_id

    @property
    def use_domain(self) -> bool:
        return bool(self.params.use_domain)

    def store(self) -> Store:
        return store_for(self.server, self.params.db_url)

    def domain(self, name: str) -> Domain:
        d = self.domains.get(name)
        if d is None:
            store = self.store if self.params.db_mode else None
            d = self.domains[name] = Domain(name, self.params.db_mode, store, self.use_domain)
            if self.params.server_id_filter:
                d.load_only = self.server_id
            self._register_stats(name)
            if self.params.db_mode != 3:  # db_mode 3 keeps nothing in memory
                self.share(f"usrloc:{name}", d)
        return d

    def init(self) -> None:
        # a table another worker writes before this one used it
        self.server.shared.register_factory("usrloc:", self.domain)
        self.server.stats.gauge(
            "usrloc",
            "registered_users",
            lambda: sum(self.counts(name)[0] for name in list(self.domains)),
            "addresses-of-record with at least one contact, in all location tables",
            self._merge,
        )
        self.domain("location")
        for name in self.params.preload:
            self.domain(name)
        if self.params.db_mode:
            self._check_tables()

    def _check_tables(self) -> None:
        """Refuse to start on a table of another schema (as Kamailio does); a database that
        is down now is only logged (the tables are checked again on first use)."""
        for d in self.domains.values():
            try:
                d.table()
            except SchemaMismatch as err:
                from ksr.core.config import ConfigError

                raise ConfigError(f"[modparam.usrloc] {err}", self.server.config.source) from None
            except DbError as err:
                log.warning("usrloc: table %s not checked at start-up: %s", d.name, err)

    @property
    def _merge(self) -> str:
        # every worker reads the same table: the database (db_mode 3) or its copy of the
        # shared table (below 3, docs/workers.md): counted once, not added up
        return ONE

    def counts(self, name: str) -> tuple[int, int]:
        """(users, contacts) of a table for the statistics. In db_mode 3 that is a scan of the
        database table, so one scan serves every statistic for COUNTS_CACHE seconds."""
        d = self.domains[name]
        if self.params.db_mode != 3:
            return d.counts()
        now = time.monotonic()
        hit = self._counts.get(name)
        if hit is None or now - hit[0] > COUNTS_CACHE:
            hit = self._counts[name] = (now, *d.counts())
        return hit[1], hit[2]

    def _register_stats(self, name: str) -> None:
        st = self.server.stats
        st.gauge(
            "usrloc",
            f"{name}_users",
            lambda: self.counts(name)[0],
            f"addresses-of-record with at least one contact in table {name}",
            self._merge,
        )
        st.gauge(
            "usrloc",
            f"{name}_contacts",
            lambda: self.counts(name)[1],
            f"contacts in table {name}",
            self._merge,
        )
        st.counter("usrloc", f"{name}_expires", doc=f"contacts of table {name} that expired")

    async def start(self, nursery: trio.Nursery) -> None:
        if self.params.db_mode in (1, 2):
            for d in self.domains.values():
                try:
                    d.load()
                except DbError as err:  # keep starting: the table loads on first use
                    log.error("usrloc: preload of %s failed: %s", d.name, err)
        self.server.timers.every(self.params.timer_interval, self.timer)

    def stop(self) -> None:
        self.flush_all()

    def timer(self) -> None:
        # expiry and write-back may query the database many times: they wait, the worker
        # goes on (ksr/suspend); a run still waiting when the next is due is not doubled
        if self._timer_busy:
            return
        self._timer_busy = True
        self.server.runner.run_detached(self._timer_run, "usrloc timer")

    def _timer_run(self) -> None:
        try:
            if self.server.shared.leader:  # worker processes: one expires, the removal replicates
                self.server.shared.sync()  # refreshes other workers made count first
                self.expire_all()
            self.flush_all()
        finally:
            self._timer_busy = False

    def expires_here(self, c: Contact) -> bool:
        """server_id_filter: this node removes its own expired rows, and those of a node
        of the cluster that died (spread over the survivors, ksr/core/cluster_nodes.py)."""
        return c.server_id == self.server_id or self.server.cluster.nodes.adopts(
            c.server_id, c.ruid
        )

    def expire_all(self) -> None:
        now = self.now()
        keep = self.expires_here if self.params.server_id_filter else None
        for d in list(self.domains.values()):
            for c in d.expire(now, keep):
                self.server.stats.counter("usrloc", f"{d.name}_expires").inc()
                for cb in self.expired_callbacks:
                    try:
                        cb(d.name, c)
                    except Exception:
                        log.exception("usrloc: contact-expired callback failed")

    def flush_all(self) -> int:
        n = 0
        for d in self.domains.values():
            try:
                n += d.flush()
            except DbError as err:
                log.warning("usrloc: write-back of %s failed (will retry): %s", d.name, err)
        return n

    # -- helpers for registrar, nathelper and RPC ---------------------------------------------
    @property
    def nat_flag(self) -> int:
        """The branch-flag mask of ``nat_bflag`` (0 when unset), as Kamailio's ``ul.nat_flag``."""
        return 1 << self.params.nat_bflag if self.params.nat_bflag >= 0 else 0

    def live_contacts(self, cflags: int = 0) -> list[tuple[Domain, Contact]]:
        """Every unexpired contact of every table whose branch flags (``cflags``, saved by
        registrar from the REGISTER's branch flags) include all of ``cflags`` — Kamailio's
        ``get_all_ucontacts``. A table that cannot be read is skipped (logged)."""
        now = self.now()
        out: list[tuple[Domain, Contact]] = []
        for d in list(self.domains.values()):
            try:
                records = d.all()
            except UsrlocError as err:
                log.warning("usrloc: cannot list %s: %s", d.name, err)
                continue
            for contacts in records.values():
                out.extend(
                    (d, c) for c in contacts if not c.expired(now) and c.cflags & cflags == cflags
                )
        return out

    def expire_soon(self, d: Domain, c: Contact, seconds: float) -> None:
        """Make ``c`` expire within ``seconds``: the next expiry run removes it and fires
        ``usrloc:contact-expired`` (a contact that stopped answering keepalives)."""
        at = self.now() + seconds
        if c.expires and c.expires <= at:
            return
        c.expires = at
        try:
            d.put(c, mem_only=True)
        except UsrlocError as err:
            log.warning("usrloc: cannot shorten the expiry of %s: %s", c.ruid, err)

    def new_ruid(self) -> str:
        return self.ruids.next()

    def state_name(self, d: Domain, c: Contact) -> str:
        if d.db_mode == 0:
            return "CS_NEW"
        if d.db_mode == 2 and c.ruid in d.dirty:
            return "CS_DIRTY"
        return "CS_SYNC"

    def _rpc_domain(self, table: Any) -> Domain:
        d = self.domains.get(str(table))
        if d is None:
            raise RpcError(500, "Domain not found")
        return d

    def _rpc_aor(self, aor: Any) -> str:
        text = str(aor)
        if text.startswith(("sip:", "sips:")):
            text = text.split(":", 1)[1]
        if self.use_domain:
            if "@" not in text:
                raise RpcError(500, "Domain missing in AOR")
            return text
        return text.split("@", 1)[0]

    # -- RPC ---------------------------------------------------------------------------------
    @rpc("ul.dump")
    def rpc_dump(self, brief: str = "") -> dict[str, Any]:
        """ul.dump [brief]: every location table with its AORs and contacts."""
        now = self.now()
        out = []
        for d in self.domains.values():
            try:
                records = d.all()
            except UsrlocError as err:
                raise RpcError(500, f"Internal error: {err}") from None
            state = "CS_NEW" if d.db_mode == 0 else "CS_SYNC"
            out.append(domain_dump(d.name, records, brief == "brief", now, state))
        return {"Domains": out}

    @rpc("ul.lookup")
    def rpc_lookup(self, table: Any = None, aor: Any = None) -> dict[str, Any]:
        """ul.lookup table AOR: the contacts of one AOR."""
        if table is None or aor is None:
            raise RpcError(500, "Not enough parameters (table and AOR to lookup)")
        d = self._rpc_domain(table)
        key = self._rpc_aor(aor)
        try:
            contacts = d.get(key)
        except UsrlocError as err:
            raise RpcError(500, f"Internal error: {err}") from None
        if not contacts:
            raise RpcError(500, "AOR not found in location table")
        now = self.now()
        return {
            "AoR": key,
            "Contacts": [
                contact_info(c, now, self.state_name(d, c)) for c in sorted(contacts, key=order_key)
            ],
        }

    @rpc("ul.rm")
    def rpc_rm(self, table: Any = None, aor: Any = None) -> None:
        """ul.rm table AOR: delete every contact of an AOR."""
        if table is None or aor is None:
            raise RpcError(500, "Not enough parameters (table and AOR to lookup)")
        d = self._rpc_domain(table)
        try:
            d.remove_aor(self._rpc_aor(aor))
        except UsrlocError:
            raise RpcError(500, "Failed to delete AOR") from None

    @rpc("ul.rm_contact")
    def rpc_rm_contact(self, table: Any = None, aor: Any = None, contact: Any = None) -> None:
        """ul.rm_contact table AOR contact: delete one contact."""
        if table is None or aor is None or contact is None:
            raise RpcError(500, "Not enough parameters (table, AOR and contact)")
        d = self._rpc_domain(table)
        try:
            cs = d.get(self._rpc_aor(aor))
            if not cs:
                raise RpcError(404, "AOR not found")
            hit = [c for c in cs if c.contact == str(contact)]
            if not hit:
                raise RpcError(404, "Contact not found")
            for c in hit:
                d.remove(c)
        except UsrlocError:
            raise RpcError(500, "Failed to delete contact") from None

    @rpc("ul.add")
    def rpc_add(
        self,
        table: Any = None,
        aor: Any = None,
        contact: Any = None,
        expires: Any = None,
        q: Any = None,
        path: Any = None,
        flags: Any = None,
        cflags: Any = None,
        methods: Any = None,
        received: Any = None,
        socket: Any = None,
    ) -> None:
        """ul.add table AOR contact expires q path flags cflags methods [received] [socket]
        ('0' or '.' leaves a string unset)."""
        if methods is None:
            raise RpcError(500, "Not enough parameters or wrong format")
        d = self._rpc_domain(table)

        def s(v: Any) -> str:
            return "" if v is None or str(v) in ("0", ".") else str(v)

        try:
            exp = int(expires)
            qv = float(q)
        except (TypeError, ValueError):
            raise RpcError(500, "Not enough parameters or wrong format") from None
        key = self._rpc_aor(aor)
        now = self.now()
        try:
            existing = [c for c in d.get(key) if c.contact == str(contact)]
            c = existing[0] if existing else Contact(key, str(contact), 0, ruid=self.new_ruid())
            c.expires = now + exp if exp > 0 else 0
            c.q = int(round(qv * 1000)) if qv >= 0 else -1
            c.path, c.received, c.socket = s(path), s(received), s(socket)
            c.flags, c.cflags = int(flags or 0), int(cflags or 0)
            c.methods = int(methods) if int(methods) else ALL_METHODS
            c.callid, c.cseq, c.user_agent = (
                "dfjrewr12386fd6-343@kamailio.mi",
                1,
                "SIP Router MI Server",
            )
            c.last_modified = now
            d.put(c)
        except UsrlocError:
            raise RpcError(500, "Failed to insert contact") from None
        except ValueError:
            raise RpcError(500, "Not enough parameters or wrong format") from None

    @rpc("ul.flush")
    def rpc_flush(self) -> None:
        """ul.flush: write pending changes to the database now (db_mode 2)."""
        self.flush_all()

    @rpc("ul.db_users")
    def rpc_db_users(self, table: Any = None) -> dict[str, Any]:
        """ul.db_users table: number of distinct AORs in the database table."""
        d = self._db_domain(table)
        try:
            return {"users": len({r["aor"] for r in d.table().all()})}
        except DbError as err:
            raise RpcError(500, f"Failed to query AOR count: {err}") from None

    @rpc("ul.db_contacts")
    def rpc_db_contacts(self, table: Any = None) -> dict[str, Any]:
        """ul.db_contacts table: number of contacts in the database table."""
        d = self._db_domain(table)
        try:
            return {"contacts": d.table().count()}
        except DbError as err:
            raise RpcError(500, f"Failed to query contact count: {err}") from None

    @rpc("ul.db_expired_contacts")
    def rpc_db_expired(self, table: Any = None) -> dict[str, Any]:
        """ul.db_expired_contacts table: expired contacts still in the database table."""
        d = self._db_domain(table)
        try:
            return {
                "contacts": len(
                    [r for r in d.table().find_below("expires", self.now()) if r["expires"]]
                )
            }
        except DbError as err:
            raise RpcError(500, f"Failed to query contact count: {err}") from None

    def _db_domain(self, table: Any) -> Domain:
        if table is None:
            raise RpcError(500, "Not enough parameters (table)")
        if self.params.db_mode == 0:
            raise RpcError(500, "Command is not supported in db_mode 0")
        return self._rpc_domain(table)


MODULE = Usrloc
