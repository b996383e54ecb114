"""htable: named in-memory hash tables shared by all messages (KSR.htable, $sht, htable.* RPC).

Tables are declared with ``htable = ["ipban=>size=8;autoexpire=300;"]``. Expired items are
invisible at once and removed by a timer, which also runs ``htable:expired:<table>`` events
(the key and value in ``$shtrecord(key)``/``$shtrecord(value)``) when ``event_callback`` is set.
``htable:mod-init`` runs once the script is loaded (Kamailio runs it before, where Lua fails).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.pv import pv, split_index
from ksr.core.rpc import RpcError, rpc
from ksr.db import DbError, store_for
from ksr.kemi.registry import XVal, kemi

from . import db
from .table import DefinitionError, HTable, TableDef, parse_definition

if TYPE_CHECKING:
    from .api import HtableApi

log = logging.getLogger("ksr.htable")
MISSING = -255  # sht_inc/sht_dec on a missing item (Kamailio's observed value)


class HtableParams(ModParams):
    # the default scripts' flood protection bans into ipban (docs/default-script.md); a
    # configuration that sets htable replaces this list
    htable: list[str] = ["ipban=>size=8;autoexpire=300;"]
    event_callback: str = ""
    event_callback_mode: int = 0
    timer_interval: int = 20
    db_url: str = ""
    enable_dmq: int = 0
    array_size_suffix: str = "::size"


def _clock() -> float:
    try:
        return trio.current_time()
    except RuntimeError:
        return time.monotonic()


def _split_ref(arg: str) -> tuple[str, str] | None:
    """``table=>key`` of $sht and friends."""
    t, sep, k = arg.partition("=>")
    return (t.strip(), k) if sep else None


def _matcher(op: str, val: str) -> Callable[[str], bool] | None:
    if op == "re":
        try:
            rx = re.compile(val)
        except re.error:
            return None
        return lambda s: rx.search(s) is not None
    ops: dict[str, Callable[[str], bool]] = {
        "eq": lambda s: s == val,
        "ne": lambda s: s != val,
        "sw": lambda s: s.startswith(val),
        "ew": lambda s: s.endswith(val),
        "in": lambda s: val in s,
    }
    return ops.get(op)


class Htable(Module):
    name = "htable"
    Params = HtableParams
    events = ("htable:mod-init", "htable:expired:<table>")

    def api(self) -> HtableApi:
        from .api import HtableApi

        return HtableApi(self)

    def init(self) -> None:
        self.tables: dict[str, HTable] = {}
        for text in self.params.htable:
            try:
                d = parse_definition(text)
            except DefinitionError as err:
                from ksr.core.config import ConfigError

                raise ConfigError(
                    f"[modparam.htable] htable: {err}", self.server.config.source
                ) from None
            self.tables[d.name] = HTable(d, _clock)
            self.share(f"htable:{d.name}", self.tables[d.name])
            if d.dmqreplicate:
                self._share_with_nodes(d.name)
        self._load_db()
        self.iterators: dict[str, tuple[str, list[str], int]] = {}
        self.record: tuple[str, object] | None = None

    def _share_with_nodes(self, name: str) -> None:
        cluster = self.server.cluster
        if not cluster.enabled:
            log.warning(
                "htable %s: dmqreplicate=1 but no [cluster] redis_url: the table stays local "
                "(see docs/cluster.md)",
                name,
            )
            return
        cluster.share(f"htable:{name}", self.tables[name])

    async def start(self, nursery: trio.Nursery) -> None:
        if any(t.d.autoexpire for t in self.tables.values()) or self.params.event_callback:
            self.server.timers.every(max(1, self.params.timer_interval), self._expire)
        if self.params.event_callback:
            self.server.run_event(self.params.event_callback, "htable:mod-init")

    # -- the database (dbtable, dbmode) --------------------------------------------------------
    def _db_tables(self) -> list[HTable]:
        return [t for t in self.tables.values() if t.d.dbtable]

    def _load_db(self) -> None:
        """Fill the tables that name a dbtable; a database that cannot be read stops start-up."""
        if not self._db_tables():
            return
        from ksr.core.config import ConfigError

        if not self.params.db_url:
            raise ConfigError(
                "[modparam.htable] a table names a dbtable but db_url is not set",
                self.server.config.source,
            )
        for t in self._db_tables():
            try:
                n = db.load(
                    t, store_for(self.server, self.params.db_url), self.params.array_size_suffix
                )
            except DbError as err:
                raise ConfigError(
                    f"[modparam.htable] table {t.name}: {err}", self.server.config.source
                ) from None
            log.info("htable %s: %d items loaded from %s", t.name, n, t.d.dbtable)

    def stop(self) -> None:
        # dbmode=1: written back once (by the first worker: the tables are the same in each)
        if getattr(self.server, "worker_id", 0) != 0:
            return
        for t in self._db_tables():
            if t.d.dbmode != 1:
                continue
            try:
                n = db.save(t, store_for(self.server, self.params.db_url))
                log.info("htable %s: %d items written to %s", t.name, n, t.d.dbtable)
            except DbError as err:
                log.error("htable %s: items not written to %s: %s", t.name, t.d.dbtable, err)

    # -- API for other modules -------------------------------------------------------------------
    def table(self, name: str) -> HTable | None:
        return self.tables.get(name)

    def _expire(self) -> None:
        for t in self.tables.values():
            gone = t.pop_expired()  # each worker process drops them from its own copy
            cb = self.params.event_callback if self.server.shared.leader else ""
            for key, value in gone:
                if cb:
                    self.record = (key, value)
                    try:
                        self.server.run_event(cb, f"htable:expired:{t.name}")
                    finally:
                        self.record = None

    # -- pseudo-variables ------------------------------------------------------------------------
    def _ref(self, arg: str) -> tuple[HTable, str] | None:
        ref = _split_ref(split_index(arg)[0])
        if ref is None:
            return None
        t = self.tables.get(ref[0])
        return (t, ref[1]) if t is not None else None

    @pv("sht")
    def _pv_get(self, ctx: MsgContext, arg: str, idx: int | None) -> XVal:
        r = self._ref(arg)
        return r[0].get(r[1]) if r else None

    @pv("sht", sets=True)
    def _pv_set(self, ctx: MsgContext, arg: str, value: XVal) -> bool:
        r = self._ref(arg)
        if r is None:
            return False
        if value is None:
            r[0].delete(r[1])
        else:
            r[0].set(r[1], value)
        return True

    @pv("shtex")
    def _pv_ex_get(self, ctx: MsgContext, arg: str, idx: int | None) -> XVal:
        r = self._ref(arg)
        return r[0].remaining(r[1]) if r else None

    @pv("shtex", sets=True)
    def _pv_ex_set(self, ctx: MsgContext, arg: str, value: XVal) -> bool:
        r = self._ref(arg)
        if r is None or value is None:
            return False
        return r[0].set_expire(r[1], int(value))

    @pv("shtinc")
    def _pv_inc(self, ctx: MsgContext, arg: str, idx: int | None) -> XVal:
        return self._pv_add(arg, 1)

    @pv("shtdec")
    def _pv_dec(self, ctx: MsgContext, arg: str, idx: int | None) -> XVal:
        return self._pv_add(arg, -1)

    @pv("shtitkey")
    def _pv_itkey(self, ctx: MsgContext, arg: str, idx: int | None) -> XVal:
        return self._it_current(arg.strip(), True)

    @pv("shtitval")
    def _pv_itval(self, ctx: MsgContext, arg: str, idx: int | None) -> XVal:
        return self._it_current(arg.strip(), False)

    def _pv_add(self, arg: str, delta: int) -> XVal:
        r = self._ref(arg)
        return r[0].add(r[1], delta) if r else None

    @pv("shtrecord")
    def _pv_record(self, ctx: MsgContext, arg: str, idx: int | None) -> XVal:
        if self.record is None:
            return None
        key, value = self.record
        if arg.strip() == "key":
            return key
        return value if isinstance(value, (int, str)) else None

    # -- KSR.htable: items ---------------------------------------------------------------------------
    @kemi()
    def sht_get(self, ctx: MsgContext, table: str, key: str) -> XVal:
        """Value of table[key] (int or str); None/nil if missing."""
        t = self.tables.get(table)
        return t.get(key) if t else None

    @kemi()
    def sht_gete(self, ctx: MsgContext, table: str, key: str) -> XVal:
        """sht_get, "" if missing."""
        v = self.sht_get(ctx, table, key)
        return "" if v is None else v

    @kemi()
    def sht_getw(self, ctx: MsgContext, table: str, key: str) -> XVal:
        """sht_get, "<null>" if missing."""
        v = self.sht_get(ctx, table, key)
        return "<null>" if v is None else v

    def _set(self, table: str, key: str, value: int | str, expire: int | None = None) -> int:
        t = self.tables.get(table)
        if t is None:
            return -1
        t.set(key, value, expire)
        return 1

    @kemi()
    def sht_sets(self, ctx: MsgContext, table: str, key: str, value: str) -> int:
        """table[key] = string value."""
        return self._set(table, key, value)

    @kemi()
    def sht_seti(self, ctx: MsgContext, table: str, key: str, value: int) -> int:
        """table[key] = integer value."""
        return self._set(table, key, value)

    @kemi()
    def sht_setxs(self, ctx: MsgContext, table: str, key: str, value: str, expire: int) -> int:
        """table[key] = string value, expiring in expire seconds."""
        return self._set(table, key, value, expire)

    @kemi()
    def sht_setxi(self, ctx: MsgContext, table: str, key: str, value: int, expire: int) -> int:
        """table[key] = integer value, expiring in expire seconds."""
        return self._set(table, key, value, expire)

    @kemi()
    def sht_setex(self, ctx: MsgContext, table: str, key: str, expire: int) -> int:
        """Set the expiry of an existing item (seconds from now)."""
        t = self.tables.get(table)
        return 1 if t is not None and t.set_expire(key, expire) else -1

    @kemi()
    def sht_is_null(self, ctx: MsgContext, table: str, key: str) -> int:
        """1 if the item is missing, -1 if present."""
        t = self.tables.get(table)
        return -1 if t is not None and t.has(key) else 1

    def _add(self, table: str, key: str, delta: int) -> int:
        t = self.tables.get(table)
        v = t.add(key, delta) if t is not None else None
        return MISSING if v is None else v

    @kemi()
    def sht_inc(self, ctx: MsgContext, table: str, key: str) -> int:
        """Add 1 to an integer item: the new value; -255 if missing (not created)."""
        return self._add(table, key, 1)

    @kemi()
    def sht_dec(self, ctx: MsgContext, table: str, key: str) -> int:
        """Subtract 1 from an integer item: the new value; -255 if missing."""
        return self._add(table, key, -1)

    @kemi()
    def sht_rm(self, ctx: MsgContext, table: str, key: str) -> int:
        """Delete an item (1 even if it was missing; -1 for an unknown table)."""
        t = self.tables.get(table)
        if t is None:
            return -1
        t.delete(key)
        return 1

    @kemi()
    def sht_reset(self, ctx: MsgContext, table: str) -> int:
        """Delete every item of the table: 0 (as Kamailio), -1 unknown table."""
        t = self.tables.get(table)
        if t is None:
            return -1
        t.clear()
        return 0

    def _rm_where(self, table: str, op: str, val: str, on_value: bool) -> int:
        t = self.tables.get(table)
        f = _matcher(op, val)
        if t is None or f is None:
            return -1
        for k, it in list(t.live_items()):
            subject = it.value if on_value else k
            if isinstance(subject, str) and f(subject):
                t.delete(k)
        return 1

    @kemi()
    def sht_rm_name_re(self, ctx: MsgContext, table: str, regex: str) -> int:
        """Delete items whose key matches the regex."""
        return self._rm_where(table, "re", regex, False)

    @kemi()
    def sht_rm_value_re(self, ctx: MsgContext, table: str, regex: str) -> int:
        """Delete items whose string value matches the regex."""
        return self._rm_where(table, "re", regex, True)

    @kemi()
    def sht_rm_name(self, ctx: MsgContext, table: str, op: str, val: str) -> int:
        """Delete items whose key matches val by op (re, sw, ew, in, eq)."""
        return self._rm_where(table, op, val, False)

    @kemi()
    def sht_rm_value(self, ctx: MsgContext, table: str, op: str, val: str) -> int:
        """Delete items whose string value matches val by op."""
        return self._rm_where(table, op, val, True)

    def _count(self, table: str, op: str, val: str, on_value: bool) -> int | None:
        t = self.tables.get(table)
        f = _matcher(op, val)
        if t is None or f is None:
            return None
        n = 0
        for k, it in t.live_items():
            subject = it.value if on_value else k
            if isinstance(subject, str) and f(subject):
                n += 1
        return n

    @kemi()
    def sht_match_name(self, ctx: MsgContext, table: str, op: str, val: str) -> int:
        """1 if some key matches val by op (eq, ne, re, sw), -1 otherwise."""
        n = self._count(table, op, val, False)
        return 1 if n else -1

    @kemi()
    def sht_match_str_value(self, ctx: MsgContext, table: str, op: str, val: str) -> int:
        """1 if some string value matches val by op, -1 otherwise."""
        n = self._count(table, op, val, True)
        return 1 if n else -1

    @kemi()
    def sht_cn(self, ctx: MsgContext, table: str, op: str, val: str) -> int:
        """Number of keys matching val by op (-1 on error)."""
        n = self._count(table, op, val, False)
        return -1 if n is None else n

    @kemi()
    def sht_lock(self, ctx: MsgContext, table: str, key: str) -> int:
        """Lock the item's slot (ksr runs one message at a time per worker: nothing to do)."""
        return 1 if table in self.tables else -1

    @kemi()
    def sht_unlock(self, ctx: MsgContext, table: str, key: str) -> int:
        """Unlock the item's slot."""
        return 1 if table in self.tables else -1

    # -- iterators ---------------------------------------------------------------------------------
    def _it_current(self, iname: str, key: bool) -> XVal:
        st = self.iterators.get(iname)
        if st is None or st[2] < 0 or st[2] >= len(st[1]):
            return None
        k = st[1][st[2]]
        if key:
            return k
        t = self.tables.get(st[0])
        return t.get(k) if t else None

    @kemi()
    def sht_iterator_start(self, ctx: MsgContext, iname: str, table: str) -> int:
        """Start iterator iname over the table's items ($shtitkey/$shtitval)."""
        t = self.tables.get(table)
        if t is None or len(self.iterators) >= 4 and iname not in self.iterators:
            return -1
        self.iterators[iname] = (table, [k for k, _ in t.live_items()], -1)
        return 1

    @kemi()
    def sht_iterator_next(self, ctx: MsgContext, iname: str) -> int:
        """Move to the next item: 1, or -1 at the end."""
        st = self.iterators.get(iname)
        if st is None:
            return -1
        table, keys, pos = st
        t = self.tables.get(table)
        pos += 1
        while pos < len(keys) and (t is None or not t.has(keys[pos])):
            pos += 1
        self.iterators[iname] = (table, keys, pos)
        return 1 if pos < len(keys) else -1

    @kemi()
    def sht_iterator_end(self, ctx: MsgContext, iname: str) -> int:
        """Close the iterator."""
        return 1 if self.iterators.pop(iname, None) else -1

    def _it_item(self, iname: str) -> tuple[HTable, str] | None:
        st = self.iterators.get(iname)
        if st is None or not 0 <= st[2] < len(st[1]):
            return None
        t = self.tables.get(st[0])
        return (t, st[1][st[2]]) if t else None

    @kemi()
    def sht_iterator_rm(self, ctx: MsgContext, iname: str) -> int:
        """Delete the current item."""
        r = self._it_item(iname)
        return 1 if r and r[0].delete(r[1]) else -1

    @kemi()
    def sht_iterator_sets(self, ctx: MsgContext, iname: str, value: str) -> int:
        """Set the current item to a string."""
        return self._it_set(iname, value)

    @kemi()
    def sht_iterator_seti(self, ctx: MsgContext, iname: str, value: int) -> int:
        """Set the current item to an integer."""
        return self._it_set(iname, value)

    def _it_set(self, iname: str, value: str | int) -> int:
        r = self._it_item(iname)
        if r is None:
            return -1
        r[0].set(r[1], value)
        return 1

    @kemi()
    def sht_iterator_setex(self, ctx: MsgContext, iname: str, expire: int) -> int:
        """Set the expiry of the current item."""
        r = self._it_item(iname)
        return 1 if r and r[0].set_expire(r[1], expire) else -1

    # -- RPC -------------------------------------------------------------------------------------
    def _rpc_table(self, name: object) -> HTable:
        t = self.tables.get(str(name))
        if t is None:
            raise RpcError(500, "No such htable")
        return t

    @rpc("htable.get")
    def rpc_get(self, table: str, key: str) -> dict[str, object]:
        """htable.get table key: the item as {"item": {"name", "value"}}."""
        t = self._rpc_table(table)
        if not t.has(str(key)):
            raise RpcError(500, "Key name doesn't exist in htable.")
        return {"item": {"name": str(key), "value": t.get(str(key))}}

    @rpc("htable.sets")
    def rpc_sets(self, table: str, key: str, value: object) -> str:
        """htable.sets table key value: set a string item."""
        self._rpc_table(table).set(str(key), str(value))
        return "Ok. Key set to new value."

    @rpc("htable.seti")
    def rpc_seti(self, table: str, key: str, value: object) -> str:
        """htable.seti table key value: set an integer item."""
        try:
            n = int(str(value))
        except ValueError:
            raise RpcError(500, "Invalid integer value") from None
        self._rpc_table(table).set(str(key), n)
        return "Ok. Key set to new value."

    @rpc("htable.setex")
    def rpc_setex(self, table: str, key: str, expire: object) -> str:
        """htable.setex table key seconds: set an item's expiry."""
        if not self._rpc_table(table).set_expire(str(key), int(str(expire))):
            raise RpcError(500, "Key name doesn't exist in htable.")
        return "Ok. Key expire set."

    @rpc("htable.delete")
    def rpc_delete(self, table: str, key: str) -> str:
        """htable.delete table key: remove an item."""
        self._rpc_table(table).delete(str(key))
        return "Ok. Key deleted."

    @rpc("htable.flush")
    def rpc_flush(self, table: str) -> str:
        """htable.flush table: remove every item."""
        self._rpc_table(table).clear()
        return "Ok. Table flushed."

    @rpc("htable.dump")
    def rpc_dump(self, table: str) -> list[dict[str, object]]:
        """htable.dump table: the non-empty slots with their items."""
        t = self._rpc_table(table)
        slots: dict[int, list[dict[str, object]]] = {}
        for k, it in t.live_items():
            slots.setdefault(t.slot_of(k), []).append(
                {
                    "name": k,
                    "value": it.value,
                    "type": "int" if isinstance(it.value, int) else "str",
                }
            )
        return [
            {"entry": e, "size": len(items), "slot": items} for e, items in sorted(slots.items())
        ]

    @rpc("htable.reload")
    def rpc_reload(self, table: str) -> None:
        """htable.reload table: the table's items again from its dbtable."""
        t = self._rpc_table(table)
        if not t.d.dbtable or not self.params.db_url:
            raise RpcError(500, "Reload failed: htable has no database source")
        try:
            db.load(t, store_for(self.server, self.params.db_url), self.params.array_size_suffix)
        except DbError as err:
            raise RpcError(500, f"Reload failed: {err}") from None
        return None

    @rpc("htable.listTables")
    def rpc_list(self) -> list[dict[str, object]]:
        """htable.listTables: every table with its attributes."""
        return [_describe(t.d) for t in self.tables.values()]

    @rpc("htable.stats")
    def rpc_stats(self) -> list[dict[str, object]]:
        """htable.stats: items per table."""
        out: list[dict[str, object]] = []
        for t in self.tables.values():
            n = sum(1 for _ in t.live_items())
            out.append({"name": t.name, "slots": 1 << t.d.size, "all": n, "min": 0, "max": n})
        return out


def _describe(d: TableDef) -> dict[str, object]:
    return {
        "name": d.name,
        "dbtable": d.dbtable,
        "dbmode": d.dbmode,
        "expire": d.autoexpire,
        "updateexpire": d.updateexpire,
        "size": d.size,
        "dmqreplicate": d.dmqreplicate,
    }


MODULE = Htable
