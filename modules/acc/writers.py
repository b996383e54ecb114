"""Where records go: a JSON-lines file, or a table through ksr.db (SQLite, PostgreSQL).

A writer's ``write`` is synchronous and either stores the whole batch or raises; it runs in a
worker thread (see spool.py), never on the event loop. Writing the same CDR twice stores it
once in ksr's CDR table (rows keyed by ``cdr_id``). Accounting rows go to Kamailio's ``acc`` and
``missed_calls`` layouts (kamtables.py), one INSERT per table and batch, so a retried batch is
never stored twice; CDRs go to a Kamailio-created ``acc_cdrs`` table (no cdr_id) the same way.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ksr.db import Kind, TableSpec, open_store
from ksr.db.sql import SqlStore

from .cdr import CDR_FIELDS
from .kamtables import KamailioTables

Batch = list[tuple[str, dict[str, Any]]]  # (table, record); table "" = the CDR table


class Writer(Protocol):
    def write(self, batch: Batch) -> None: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def append_lines(path: Path, lines: list[str]) -> None:
    """Append text lines to a file, on disk (fsync'ed) when this returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlWriter:
    """One JSON object per line, appended and fsync'ed per batch."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def write(self, batch: Batch) -> None:
        lines = []
        for table, rec in batch:
            obj = rec if not table else {**rec, "acc_table": table}
            lines.append(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
        append_lines(self.path, lines)

    def describe(self) -> str:
        return f"jsonl {self.path}"

    def close(self) -> None:
        pass


class StoreWriter:
    """CDRs in ksr's ``acc_cdrs`` layout (or Kamailio's, when that table exists), accounting
    rows in Kamailio's ``acc``/``missed_calls`` layouts."""

    def __init__(self, url: str, cdr_table: str, extra_names: list[str]) -> None:
        self.url = url
        self.cdr_table = cdr_table
        self.store = open_store(url)
        fields: list[tuple[str, Kind]] = list(CDR_FIELDS)
        fields += [(n, "str") for n in extra_names if n not in dict(CDR_FIELDS)]
        self.cdr_spec = TableSpec(
            cdr_table, key="cdr_id", fields=tuple(fields), indexes=("call_id",)
        )
        self.cdrs: Any = None
        self.kam: KamailioTables | None = None
        self.kam_cdrs = False  # the CDR table is Kamailio's (plain INSERTs)

    def _kam(self) -> KamailioTables:
        if self.kam is None:
            if not isinstance(self.store, SqlStore):
                raise TypeError(f"{self.url}: acc rows need an SQL database (sqlite, postgres)")
            self.kam = KamailioTables(self.store)
            self.kam_cdrs = self.kam.is_kamailio_cdr_table(self.cdr_table)
        return self.kam

    def write(self, batch: Batch) -> None:
        by_table: dict[str, list[dict[str, Any]]] = {}
        for table, rec in batch:
            by_table.setdefault(table, []).append(rec)
        for table, recs in by_table.items():
            if table:
                self._kam().insert(table, recs)
            elif isinstance(self.store, SqlStore) and (self._kam() and self.kam_cdrs):
                self._kam().insert(self.cdr_table, [kamailio_cdr(r) for r in recs], cdr=True)
            else:
                self._put_cdrs(recs)

    def _put_cdrs(self, recs: list[dict[str, Any]]) -> None:
        if self.cdrs is None:
            self.cdrs = self.store.table(self.cdr_spec)
        for rec in recs:
            row = dict(rec)
            for k, v in rec.items():
                if v is not None and not isinstance(v, (str, int, float)):
                    row[k] = str(v)
            self.cdrs.put(row)

    def describe(self) -> str:
        scheme = self.url.partition("://")[0]
        return f"{scheme} table {self.cdr_spec.name}"

    def close(self) -> None:
        try:
            self.store.close()
        except Exception:
            pass


def _unix(iso_text: Any) -> float:
    if not iso_text:
        return 0.0
    return datetime.fromisoformat(str(iso_text).replace("Z", "+00:00")).timestamp()


def kamailio_cdr(rec: dict[str, Any]) -> dict[str, Any]:
    """A ksr CDR as a row of Kamailio's acc_cdrs: start (answer) and end time, duration, and
    the cdr_extra values (kept only where the table has such a column)."""
    row = {k: v for k, v in rec.items() if k not in dict(CDR_FIELDS)}
    row["start_time"] = _unix(rec.get("answer_time") or rec.get("start_time"))
    row["end_time"] = _unix(rec.get("end_time"))
    row["duration"] = rec.get("duration") or 0.0
    return row


def make_writer(
    url: str, cdr_table: str, extra_names: list[str], base: Path | None = None
) -> Writer:
    """``jsonl:///abs/path`` (or ``jsonl://relative``), ``sqlite://...``, ``postgres://...``."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() == "jsonl" and sep:
        p = Path(rest)
        if not p.is_absolute() and base is not None:
            p = base / p
        return JsonlWriter(str(p))
    return StoreWriter(url, cdr_table, extra_names)
