"""Rows in Kamailio's accounting tables (``acc``, ``missed_calls``, ``acc_cdrs``) over SQL.

The layouts and the create-or-check step are ksr.db.kamailio's (a missing table is created
with Kamailio's DDL and its ``version`` row; another version is refused by name). Kamailio's
tables are keyed by a serial ``id`` with no other unique constraint, so rows are plain INSERTs.
A batch of one table is one multi-row INSERT: it is stored whole or not at all, so the queue's
retry of a failed batch never duplicates a row. The extra columns ``db_extra`` names are added
(VARCHAR(128), default '') when the table lacks them — what kamailio-basic-kemi.cfg asks its
administrator to do with ALTER TABLE.
"""

from __future__ import annotations

import logging
from typing import Any

from ksr.db import kamailio
from ksr.db.sql import SqlStore

log = logging.getLogger("ksr.acc")

TIME_COLUMNS = ("time", "start_time", "end_time")
LAYOUTS = {"acc": kamailio.ACC, "missed_calls": kamailio.MISSED_CALLS}


class KamailioTables:
    """Creates (when missing) or checks, and fills, Kamailio-layout accounting tables."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.columns: dict[str, list[str]] = {}  # table -> its columns (known to exist)

    def _ensure(self, table: str, layout: kamailio.Layout, extras: list[str]) -> list[str]:
        cols = self.columns.get(table)
        if cols is not None and all(n in cols for n in extras):
            return cols
        s = self.store
        full = s.prefix + table
        if cols is None:
            kamailio.ensure(s, layout.spec().renamed(table))
        have = s.columns(full) or []
        for n in extras:
            if n not in have:
                log.info("acc: adding column %s to table %s (named by db_extra)", n, full)
                s.execute(
                    f"ALTER TABLE {full} ADD COLUMN {kamailio.quote(n)} "
                    "VARCHAR(128) DEFAULT '' NOT NULL"
                )
                have.append(n)
        self.columns[table] = list(have)
        return self.columns[table]

    def insert(self, table: str, rows: list[dict[str, Any]], cdr: bool = False) -> None:
        """One INSERT of every row: the columns the rows carry (missing extras are added to
        an acc-like table; a CDR table keeps its columns and unknown values are left out)."""
        if not rows:
            return
        layout = kamailio.ACC_CDRS if cdr else LAYOUTS.get(table, kamailio.ACC)
        known = {c.name for c in layout.cols}
        names: list[str] = []
        for r in rows:
            names += [k for k in r if k not in names]
        extras = [n for n in names if n not in known and n != "id"]
        cols = self._ensure(table, layout, [] if cdr else extras)
        use = [n for n in names if n in cols and n != "id"]
        values: list[Any] = []
        for r in rows:
            for n in use:
                v = r.get(n)
                if n in TIME_COLUMNS:
                    v = self.store.enc_time(float(v or 0) or 946684800.0)  # 2000-01-01
                elif v is None:
                    v = 0 if n == "duration" else ""
                values.append(v)
        one = "(" + ", ".join("?" for _ in use) + ")"
        self.store.execute(
            f"INSERT INTO {self.store.prefix}{table} ({', '.join(map(kamailio.quote, use))}) "
            f"VALUES {', '.join(one for _ in rows)}",
            tuple(values),
        )

    def is_kamailio_cdr_table(self, table: str) -> bool:
        """Kamailio's acc_cdrs (serial id, no cdr_id): CDRs go in with plain INSERTs."""
        have = self.store.columns(self.store.prefix + table)
        return have is not None and "cdr_id" not in have
