"""A location table ("domain" in Kamailio's words): the bindings of every AOR, kept in memory,
in the database, or both, according to db_mode.

db_mode 0: memory only.  1: write-through (the database is written before the call returns;
a failed write changes nothing and raises).  2: write-back (memory now, the database on the
timer and at shutdown).  3: database only (every read asks the database; nodes sharing it see
each other's bindings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from ksr.core.replication import replicated, replicated_with
from ksr.db import DbError, KamTable, Row, Store, Table

from .contact import (
    KAM_LOCATION_ATTRS_SPEC,
    KAM_LOCATION_SPEC,
    LOCATION_SPEC,
    BindingWrite,
    Contact,
    pack_contact,
)

log = logging.getLogger("ksr.usrloc")


class UsrlocError(Exception):
    """A location update could not be stored (the caller answers 500). ``retry_after``: set
    when the database is unavailable (seconds until it is tried again)."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _db_failed(err: DbError) -> UsrlocError:
    return UsrlocError(str(err), getattr(err, "retry_after", None))


_BINDING_WRITE = BindingWrite()


class Domain:
    def __init__(
        self,
        name: str,
        db_mode: int,
        store: Callable[[], Store] | None,
        use_domain: bool = False,
    ) -> None:
        self.name = name
        self.db_mode = db_mode
        self.use_domain = use_domain
        self._store = store
        self._table: Table | None = None
        self._kam: KamTable | None = None  # the same table, when in Kamailio's layout
        self.mem: dict[str, dict[str, Contact]] = {}  # aor -> ruid -> contact
        self.dirty: set[str] = set()  # write-back: ruids to write
        self.gone: set[str] = set()  # write-back: ruids to delete
        self.loaded = db_mode in (0, 3)
        self.load_only: int | None = None  # server_id_filter: load this node's rows only

    # -- memory, the same in every worker process (a shared table) ---------------------------
    @replicated_with(_BINDING_WRITE)
    def _mem_put(self, values: tuple[object, ...]) -> None:
        self.store(Contact(*values))  # type: ignore[arg-type]

    def store(self, c: Contact) -> None:
        """Keep ``c`` in memory (no replication: ``_mem_put`` shares it; a sibling's write
        arrives through ``BindingWrite.apply``, which stores as this does)."""
        self.mem.setdefault(c.aor, {})[c.ruid] = c

    @replicated
    def _mem_remove(self, aor: str, ruid: str, expired_at: float | None = None) -> bool:
        """Remove a binding; ``expired_at``: only if it still expires then (an expiry must not
        remove a binding another worker refreshed meanwhile)."""
        cs = self.mem.get(aor, {})
        if expired_at is not None:
            c = cs.get(ruid)
            if c is None or c.expires != expired_at:
                return False
        removed = cs.pop(ruid, None) is not None
        if not cs:
            self.mem.pop(aor, None)
        return removed

    def replica_snapshot(self) -> tuple[bool, list[tuple[object, ...]]]:
        return self.loaded, [c.values() for cs in self.mem.values() for c in cs.values()]

    def replica_restore(self, state: tuple[bool, list[tuple[object, ...]]]) -> None:
        loaded, rows = state
        self.mem = {}
        for values in rows:
            c = Contact(*values)  # type: ignore[arg-type]
            self.mem.setdefault(c.aor, {})[c.ruid] = c
        self.loaded = self.loaded or loaded

    # -- the database side --------------------------------------------------------------------
    def table(self) -> Table:
        if self._table is None:
            assert self._store is not None
            store = self._store()
            if store.layout == "kamailio":
                t = cast(KamTable, store.table(KAM_LOCATION_SPEC.renamed(self.name)))
                # Kamailio checks location_attrs' version too: create it with its row
                store.table(KAM_LOCATION_ATTRS_SPEC)
                self._kam = t
                self._table = t
            else:
                self._table = store.table(LOCATION_SPEC.renamed(self.name))
        return self._table

    # rows <-> contacts in the table's layout
    def _row(self, c: Contact) -> Row:
        return c.to_row() if self._kam is None else c.to_kam_row(self.use_domain)

    def _contact(self, r: Row) -> Contact:
        return (
            Contact.from_row(r) if self._kam is None else Contact.from_kam_row(r, self.use_domain)
        )

    def _find_aor(self, aor: str) -> list[Row]:
        t = self.table()
        if self._kam is None:
            return t.find("aor", aor)
        user, at, domain = aor.partition("@") if self.use_domain else (aor, "", "")
        where: Row = {"username": user}
        if self.use_domain:
            where["domain"] = domain if at else None
        return self._kam.select(where)

    def load(self) -> None:
        """Fill memory from the database (preload; done on first use in modes 1 and 2)."""
        if self.loaded:
            return
        rows = self.table().all()
        n = 0
        for row in rows:
            c = self._contact(row)
            if self.load_only is not None and c.server_id != self.load_only:
                continue
            self.mem.setdefault(c.aor, {})[c.ruid] = c
            n += 1
        self.loaded = True
        log.info("usrloc: loaded %d contacts of table %s", n, self.name)

    def _mem_ready(self) -> None:
        if not self.loaded:
            try:
                self.load()
            except DbError as err:
                raise UsrlocError(f"cannot load table {self.name}: {err}") from err

    # -- reads --------------------------------------------------------------------------------
    def get(self, aor: str) -> list[Contact]:
        """Every stored binding of ``aor`` (expired ones included: callers filter by time)."""
        if self.db_mode == 3:
            try:
                return [self._contact(r) for r in self._find_aor(aor)]
            except DbError as err:
                raise _db_failed(err) from err
        self._mem_ready()
        return [c.copy() for c in self.mem.get(aor, {}).values()]

    def read(self, aor: str) -> list[Contact]:
        """``get`` without the copies, for a caller that only reads them: the stored bindings
        themselves (never changed in place: a write stores a new Contact). Changing one
        would change the table behind its replication: copy it first (``Contact.copy``)."""
        if self.db_mode == 3:
            return self.get(aor)
        if not self.loaded:
            self._mem_ready()
        cs = self.mem.get(aor)
        return list(cs.values()) if cs else []

    def all(self) -> dict[str, list[Contact]]:
        if self.db_mode == 3:
            try:
                rows = self.table().all()
            except DbError as err:
                raise _db_failed(err) from err
            out: dict[str, list[Contact]] = {}
            for r in rows:
                c = self._contact(r)
                out.setdefault(c.aor, []).append(c)
            return out
        self._mem_ready()
        return {aor: [c.copy() for c in cs.values()] for aor, cs in self.mem.items() if cs}

    # -- writes -------------------------------------------------------------------------------
    def put(self, c: Contact, mem_only: bool = False) -> None:
        """Insert or update (by ruid). ``mem_only`` (save flag 0x01) skips the database in
        modes 1 and 2. Memory keeps ``c`` itself: the caller must not change it afterwards
        (``Contact.copy`` first, as for what ``read`` returns)."""
        db_mode = self.db_mode
        if db_mode == 3 or (db_mode == 1 and not mem_only):
            try:
                t = self.table()
                t.put(self._row(c))
            except DbError as err:
                raise _db_failed(err) from err
        if db_mode == 3:
            return
        if not self.loaded:
            self._mem_ready()
        # ``_mem_put`` without its copy: ``c`` itself is stored (the caller hands it over),
        # and only a shared table turns it into the values its siblings build theirs from
        self.store(c)
        if "_replica" in self.__dict__:
            self.share_put(c)
        if db_mode == 2 and not mem_only:
            self.dirty.add(c.ruid)
            self.gone.discard(c.ruid)

    def share_put(self, c: Contact) -> None:
        """Hand ``c``, just stored, to the sibling workers of a shared table (``_mem_put``)."""
        link = self.__dict__.get("_replica")
        if link is not None:
            # packed from the Contact itself (no tuple of its fields) when only siblings
            # receive it; a node cluster's outward copy takes the values
            body = pack_contact(c) if link[0].outward is None else None
            if body is None or not link[0].emit_packed(link[1], _BINDING_WRITE.tag, body):
                link[0].emit_coded(link[1], "_mem_put", (c.values(),), _BINDING_WRITE)

    def remove(self, c: Contact, mem_only: bool = False, expired: bool = False) -> bool:
        """``expired``: the expiry removes it (not if another worker refreshed it meanwhile)."""
        removed = False
        if self.db_mode == 3 or (self.db_mode == 1 and not mem_only):
            try:
                removed = self.table().delete(c.ruid)
            except DbError as err:
                raise _db_failed(err) from err
        if self.db_mode == 3:
            return removed
        self._mem_ready()
        removed = self._mem_remove(c.aor, c.ruid, c.expires if expired else None) or removed
        if self.db_mode == 2:
            self.dirty.discard(c.ruid)
            if not mem_only:
                self.gone.add(c.ruid)
        return removed

    def remove_aor(self, aor: str) -> int:
        return sum(1 for c in self.get(aor) if self.remove(c))

    def expire(self, now: float, keep: Callable[[Contact], bool] | None = None) -> list[Contact]:
        """Remove bindings whose time is up; returns those this node removed. ``keep``
        (db_mode 3, server_id_filter): which of the due rows this node removes."""
        if self.db_mode == 3:
            try:
                t = self.table()
                due = [self._contact(r) for r in t.find_below("expires", now)]
            except DbError as err:
                log.warning("usrloc: expiry of %s skipped: %s", self.name, err)
                return []
            if keep is not None:
                due = [c for c in due if keep(c)]
            return [c for c in due if c.expires != 0 and self._try_remove(c)]
        if not self.loaded:
            return []
        out = [c for cs in self.mem.values() for c in cs.values() if c.expired(now)]
        return [c for c in out if self._try_remove(c)]

    def _try_remove(self, c: Contact) -> bool:
        try:
            return self.remove(c, expired=True)
        except UsrlocError as err:
            log.warning("usrloc: cannot remove expired %s: %s", c.ruid, err)
            return False

    def flush(self) -> int:
        """Write-back: send pending changes to the database. Returns rows written."""
        if self.db_mode != 2 or not (self.dirty or self.gone):
            return 0
        t = self.table()
        n = 0
        by_ruid = {c.ruid: c for cs in self.mem.values() for c in cs.values()}
        for ruid in list(self.gone):
            t.delete(ruid)
            self.gone.discard(ruid)
            n += 1
        for ruid in list(self.dirty):
            c = by_ruid.get(ruid)
            if c is not None:
                t.put(self._row(c))
                n += 1
            self.dirty.discard(ruid)
        return n

    # -- counts for statistics ----------------------------------------------------------------
    def counts(self) -> tuple[int, int]:
        """(users, contacts)."""
        if self.db_mode == 3:
            allc = self.all()
            return len(allc), sum(len(v) for v in allc.values())
        if not self.loaded:
            return 0, 0
        return len([a for a, cs in self.mem.items() if cs]), sum(
            len(cs) for cs in self.mem.values()
        )
