"""htables kept in Kamailio's ``htable`` table (version 2): a table defined with
``dbtable=NAME`` is filled from it at start-up and by ``htable.reload``; with ``dbmode=1`` its
items are written back when ksr stops (the rows of that table replaced), as Kamailio does.

Columns: ``key_name``; ``key_type`` 0 (one item) or 1 (an array: rows of the same name become
``name[0]``, ``name[1]``... and ``name::size``); ``value_type`` 0 (string) or 1 (integer);
``key_value``; ``expires`` (unix time, 0 = the table's own ``autoexpire``).
"""

from __future__ import annotations

import logging
import math
import time
from typing import cast

from ksr.db import DbError, KamTable, Row, Store
from ksr.db.kamailio import HTABLE

from .table import HTable

log = logging.getLogger("ksr.htable")

SPEC = HTABLE.spec()


def _table(store: Store, name: str) -> KamTable:
    if store.layout != "kamailio":
        raise DbError(f"htable dbtable {name}: needs an SQL db_url (Kamailio's htable table)")
    return cast(KamTable, store.table(SPEC.renamed(name)))


def load(t: HTable, store: Store, size_suffix: str) -> int:
    """Replace ``t``'s items by the rows of its dbtable; returns how many were loaded."""
    rows = sorted(_table(store, t.d.dbtable).all(), key=lambda r: int(r["id"] or 0))
    wall = time.time()
    items: list[tuple[str, int | str, int | None]] = []
    arrays: dict[str, int] = {}
    for r in rows:
        name, raw = str(r["key_name"] or ""), str(r["key_value"] or "")
        try:
            value: int | str = int(raw) if r["value_type"] == 1 else raw
        except ValueError:
            log.error("htable %s: row %s: %r is not an integer", t.name, r["id"], raw)
            continue
        expires = int(r["expires"] or 0)
        if expires and expires <= wall:
            continue  # expired while stored
        expire = max(1, math.ceil(expires - wall)) if expires else None
        if r["key_type"] == 1:
            i = arrays.get(name, 0)
            arrays[name] = i + 1
            items.append((f"{name}[{i}]", value, expire))
        else:
            items.append((name, value, expire))
    items += [(f"{name}{size_suffix}", n, None) for name, n in arrays.items()]
    t.clear()
    for key, value, expire in items:
        t.set(key, value, expire)
    return len(items)


def save(t: HTable, store: Store) -> int:
    """Write ``t``'s live items as the rows of its dbtable (the old rows go)."""
    table = _table(store, t.d.dbtable)
    wall, clock = time.time(), t.now()
    rows: list[Row] = []
    for key, it in t.live_items():
        rows.append(
            {
                "key_name": key,
                "key_type": 0,
                "value_type": 1 if isinstance(it.value, int) else 0,
                "key_value": str(it.value),
                "expires": int(wall + (it.expires - clock)) if it.expires else 0,
            }
        )
    table.delete_match({})
    for row in rows:
        table.insert(row)
    return len(rows)
