"""Rows in Kamailio's accounting tables (``acc``, ``missed_calls``, ``acc_cdrs``) over SQL.

Kamailio's tables are keyed by a serial ``id`` with no other unique constraint, so rows are
plain INSERTs. A batch of one table is one multi-row INSERT: it is stored whole or not at all,
so the queue's retry of a failed batch never duplicates a row. The extra columns that
``db_extra``/``cdr_extra`` name are added (TEXT, default '') when the table lacks them — what
kamailio-basic-kemi.cfg asks its administrator to do with ALTER TABLE.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ksr.db.sql import SqlStore

log = logging.getLogger("ksr.acc")

# Kamailio 5.6 layouts: column -> SQL type (every table also has the serial id)
ACC_COLUMNS = {
    "method": "VARCHAR(16) DEFAULT '' NOT NULL",
    "from_tag": "VARCHAR(128) DEFAULT '' NOT NULL",
    "to_tag": "VARCHAR(128) DEFAULT '' NOT NULL",
    "callid": "VARCHAR(255) DEFAULT '' NOT NULL",
    "sip_code": "VARCHAR(3) DEFAULT '' NOT NULL",
    "sip_reason": "VARCHAR(128) DEFAULT '' NOT NULL",
    "time": "TIMESTAMP WITHOUT TIME ZONE NOT NULL",
}
CDR_COLUMNS = {
    "start_time": "TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:00' NOT NULL",
    "end_time": "TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:00' NOT NULL",
    "duration": "REAL DEFAULT 0 NOT NULL",
}
VERSIONS = {"acc": 5, "missed_calls": 4, "acc_cdrs": 2}
TIME_COLUMNS = ("time", "start_time", "end_time")


def local_timestamp(ts: float) -> str:
    """A unix time as Kamailio writes DATETIME columns: local time, seconds."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _q(name: str) -> str:
    return f'"{name}"' if name == "time" else name


class KamailioTables:
    """Creates (when missing) and fills Kamailio-layout accounting tables of one SQL store."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.columns: dict[str, list[str]] = {}  # table -> its columns (known to exist)

    def _ensure(self, table: str, layout: dict[str, str], names: list[str]) -> list[str]:
        cols = self.columns.get(table)
        if cols is not None and all(n in cols for n in names):
            return cols
        s = self.store
        full = s.prefix + table
        have = s.columns(full)
        if have is None:
            idcol = (
                "id SERIAL PRIMARY KEY NOT NULL"
                if s.mark == "%s"
                else "id INTEGER PRIMARY KEY NOT NULL"
            )
            defs = ", ".join([idcol] + [f"{_q(c)} {t}" for c, t in layout.items()])
            s.execute(f"CREATE TABLE {full} ({defs})")
            key = "callid" if "callid" in layout else "start_time"
            s.execute(f"CREATE INDEX IF NOT EXISTS {full}_{key}_idx ON {full} ({key})")
            self._version_row(table)
            have = ["id", *layout]
        for n in names:
            if n not in have:
                log.info("acc: adding column %s to table %s (named by db_extra)", n, full)
                s.execute(f"ALTER TABLE {full} ADD COLUMN {n} VARCHAR(128) DEFAULT '' NOT NULL")
                have.append(n)
        self.columns[table] = list(have)
        return self.columns[table]

    def _version_row(self, table: str) -> None:
        """Kamailio's version row for a table created here (when a version table exists)."""
        vt = self.store.prefix + "version"
        if self.store.columns(vt) is None or table not in VERSIONS:
            return
        rows, _ = self.store.execute(
            f"SELECT table_version FROM {vt} WHERE table_name = ?", (table,), fetch=True
        )
        if not rows:
            self.store.execute(
                f"INSERT INTO {vt} (table_name, table_version) VALUES (?, ?)",
                (table, VERSIONS[table]),
            )

    def insert(self, table: str, rows: list[dict[str, Any]], cdr: bool = False) -> None:
        """One INSERT of every row (columns the rows carry; missing extras are added)."""
        if not rows:
            return
        layout = CDR_COLUMNS if cdr else ACC_COLUMNS
        names: list[str] = []
        for r in rows:
            names += [k for k in r if k not in names]
        extras = [n for n in names if n not in layout and n != "id"]
        cols = self._ensure(table, layout, [] if cdr else extras)
        use = [n for n in names if n in cols and n != "id"]
        values: list[Any] = []
        for r in rows:
            for n in use:
                v = r.get(n)
                if n in TIME_COLUMNS:
                    v = local_timestamp(float(v)) if v else "2000-01-01 00:00:00"
                elif v is None:
                    v = 0 if n == "duration" else ""
                values.append(v)
        one = "(" + ", ".join("?" for _ in use) + ")"
        self.store.execute(
            f"INSERT INTO {self.store.prefix}{table} ({', '.join(map(_q, use))}) "
            f"VALUES {', '.join(one for _ in rows)}",
            tuple(values),
        )

    def is_kamailio_cdr_table(self, table: str) -> bool:
        """Kamailio's acc_cdrs (serial id, no cdr_id): CDRs go in with plain INSERTs."""
        have = self.store.columns(self.store.prefix + table)
        return have is not None and "cdr_id" not in have
