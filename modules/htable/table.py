"""One hash table: items with optional expiry, parsed from Kamailio's definition text
``name=>size=8;autoexpire=300;initval=0;updateexpire=1;``."""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ksr.core.replication import replicated

Value = int | str


class DefinitionError(ValueError):
    pass


@dataclass(slots=True)
class Item:
    value: Value
    expires: float = 0.0  # clock time; 0 = never


@dataclass(slots=True)
class TableDef:
    name: str
    size: int = 4  # 2**size slots (only used to shape htable.dump)
    autoexpire: int = 0
    initval: Value | None = None
    updateexpire: int = 1
    dbtable: str = ""
    dbmode: int = 0
    dmqreplicate: int = 0  # 1: shared with the other nodes of the cluster (docs/cluster.md)


def parse_definition(text: str) -> TableDef:
    name, sep, rest = text.partition("=>")
    name = name.strip()
    if not sep or not name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise DefinitionError(f"bad htable definition {text!r} (want name=>key=value;...)")
    d = TableDef(name)
    for part in rest.split(";"):
        part = part.strip()
        if not part:
            continue
        k, eq, v = part.partition("=")
        k, v = k.strip(), v.strip()
        if not eq:
            raise DefinitionError(f"htable {name}: bad attribute {part!r}")
        if k in ("size", "autoexpire", "updateexpire", "dbmode", "dmqreplicate"):
            if not v.lstrip("-").isdigit():
                raise DefinitionError(f"htable {name}: {k} must be an integer")
            setattr(d, k, int(v))
        elif k == "initval":
            d.initval = int(v) if v.lstrip("-").isdigit() else v
        elif k == "dbtable":
            d.dbtable = v
        elif k in ("cols", "coltype"):
            continue  # accepted, no effect
        else:
            raise DefinitionError(f"htable {name}: unknown attribute {k!r}")
    d.size = max(1, min(d.size, 14))
    return d


class HTable:
    """Items of one table. ``now`` gives the clock used for expiry (trio's in the server).

    With worker processes every worker holds the same items (a shared table): the writes
    below are ``@replicated``, each worker computing expiry times on its own clock."""

    def __init__(self, d: TableDef, now: Callable[[], float]) -> None:
        self.d = d
        self.now = now
        self.items: dict[str, Item] = {}

    @property
    def name(self) -> str:
        return self.d.name

    def _live(self, key: str) -> Item | None:
        it = self.items.get(key)
        if it is not None and it.expires and it.expires <= self.now():
            return None
        return it

    def get(self, key: str) -> Value | None:
        it = self._live(key)
        if it is None:
            return self.d.initval
        return it.value

    def has(self, key: str) -> bool:
        return self._live(key) is not None

    @replicated
    def set(self, key: str, value: Value, expire: int | None = None) -> None:
        old = self._live(key)
        if expire is not None:
            exp = self.now() + expire if expire > 0 else 0.0
        elif old is not None and not self.d.updateexpire:
            exp = old.expires
        else:
            exp = self.now() + self.d.autoexpire if self.d.autoexpire else 0.0
        self.items[key] = Item(value, exp)

    @replicated
    def set_expire(self, key: str, expire: int) -> bool:
        it = self._live(key)
        if it is None:
            return False
        it.expires = self.now() + expire if expire > 0 else 0.0
        return True

    def remaining(self, key: str) -> int | None:
        it = self._live(key)
        if it is None:
            return None
        return max(0, int(it.expires - self.now())) if it.expires else 0

    @replicated
    def delete(self, key: str) -> bool:
        return self.items.pop(key, None) is not None

    @replicated
    def add(self, key: str, delta: int) -> int | None:
        """Atomic add to an integer item: new value, or None if missing or not an int."""
        it = self._live(key)
        if it is None or not isinstance(it.value, int):
            return None
        it.value += delta
        if self.d.updateexpire and self.d.autoexpire:
            it.expires = self.now() + self.d.autoexpire
        return it.value

    @replicated
    def clear(self) -> None:
        self.items.clear()

    def live_items(self) -> Iterator[tuple[str, Item]]:
        now = self.now()
        for k, it in list(self.items.items()):
            if not it.expires or it.expires > now:
                yield k, it

    def pop_expired(self) -> list[tuple[str, Value]]:
        now = self.now()
        gone = [(k, it.value) for k, it in self.items.items() if it.expires and it.expires <= now]
        for k, _ in gone:
            del self.items[k]
        return gone

    def replica_snapshot(self) -> list[tuple[str, Value, float]]:
        """Live items with their seconds to expiry (clocks differ between processes)."""
        now = self.now()
        return [
            (k, it.value, it.expires - now if it.expires else 0.0) for k, it in self.live_items()
        ]

    def replica_restore(self, state: list[tuple[str, Value, float]]) -> None:
        now = self.now()
        self.items = {k: Item(v, now + left if left else 0.0) for k, v, left in state}

    # -- shared between nodes (ksr/core/cluster.py) ------------------------------------------
    # writes whose result depends only on their arguments: a node applies its own again when
    # the channel brings them back, so all nodes end with the last one in Redis's order
    CLUSTER_IDEMPOTENT = frozenset({"set", "set_expire", "delete", "clear"})

    def cluster_change(self, op: str, args: tuple[object, ...]) -> tuple[str, str, str]:
        """How the write just made changes the table's Redis hash: (mode, key, payload) with
        mode set (payload: ``cluster_item``), del, clear, or add (payload: [delta, expiry or
        -1 to keep it]) — an add is applied to the stored value inside Redis."""
        if op == "clear":
            return "clear", "", ""
        key = str(args[0])
        if op == "add":
            it = self._live(key)
            renew = it is not None and self.d.updateexpire and self.d.autoexpire
            at = time.time() + self.d.autoexpire if renew else -1
            return "add", key, json.dumps([args[1], at])
        item = self.cluster_item(key)
        return ("del", key, "") if item is None else ("set", key, json.dumps(item))

    def cluster_item(self, key: str) -> list[Value | float] | None:
        """[value, expiry as a unix time or 0]: wall clock, as nodes do not share a monotonic one."""
        it = self._live(key)
        if it is None:
            return None
        return [it.value, time.time() + (it.expires - self.now()) if it.expires else 0]

    def cluster_items(self) -> dict[str, str]:
        """The whole content as the Redis hash holds it (``cluster_item`` JSON by key), to put
        it back into a Redis that lost it."""
        out: dict[str, str] = {}
        for key in list(self.items):
            item = self.cluster_item(key)
            if item is not None:
                out[key] = json.dumps(item)
        return out

    def cluster_load(self, items: dict[str, object]) -> list[str]:
        """Take the cluster's content (``cluster_item`` values by key); the expired keys and
        the unreadable ones are returned."""
        wall, now = time.time(), self.now()
        fresh: dict[str, Item] = {}
        stale: list[str] = []
        for k, raw in items.items():
            if not (isinstance(raw, list) and len(raw) == 2):
                stale.append(k)
                continue
            value, at = raw
            if not isinstance(value, int | str) or not isinstance(at, int | float):
                stale.append(k)
            elif at and at <= wall:
                stale.append(k)
            else:
                fresh[k] = Item(value, now + (at - wall) if at else 0.0)
        self.items = fresh
        return stale

    def slot_of(self, key: str) -> int:
        return zlib.crc32(key.encode("utf-8", "surrogateescape")) % (1 << self.d.size)
