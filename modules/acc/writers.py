"""Where records go: a JSON-lines file, or a table through ksr.db (SQLite, PostgreSQL).

A writer's ``write`` is synchronous and either stores the whole batch or raises; it runs in a
worker thread (see spool.py), never on the event loop. Writing the same record twice stores it
once in a database (rows are keyed by ``cdr_id``/``acc_id``), so a retry after a failure that
happened half-way never duplicates a CDR.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from ksr.db import Kind, TableSpec, open_store

from .cdr import ACC_FIELDS, CDR_FIELDS

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
    """Rows in a ksr.db table (Kamailio's acc_cdrs for CDRs, acc for request records)."""

    def __init__(self, url: str, cdr_table: str, extra_names: list[str]) -> None:
        self.url = url
        self.store = open_store(url)
        fields: list[tuple[str, Kind]] = list(CDR_FIELDS)
        fields += [(n, "str") for n in extra_names if n not in dict(CDR_FIELDS)]
        self.cdr_spec = TableSpec(
            cdr_table, key="cdr_id", fields=tuple(fields), indexes=("call_id",)
        )
        self.acc_fields = ACC_FIELDS
        self.tables: dict[str, Any] = {}

    def _table(self, name: str) -> Any:
        t = self.tables.get(name)
        if t is None:
            spec = (
                self.cdr_spec if not name else TableSpec(name, key="acc_id", fields=self.acc_fields)
            )
            t = self.tables[name] = self.store.table(spec)
        return t

    def write(self, batch: Batch) -> None:
        for table, rec in batch:
            row = dict(rec)
            if not table:
                for k, v in rec.items():
                    if v is not None and not isinstance(v, (str, int, float)):
                        row[k] = str(v)
            self._table(table).put(row)

    def describe(self) -> str:
        scheme = self.url.partition("://")[0]
        return f"{scheme} table {self.cdr_spec.name}"

    def close(self) -> None:
        try:
            self.store.close()
        except Exception:
            pass


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
