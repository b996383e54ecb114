"""What SQLite and PostgreSQL share: tables as SQL tables, one statement per call, autocommit.

Every statement runs in autocommit mode, so a ``put`` that returned is on disk (SQLite WAL) or
committed (PostgreSQL) — what makes a registration survive ``kill -9``. A broken connection is
dropped and reopened on the next call; an idempotent statement is retried once right away, so a
server that restarted between two calls is not even noticed.
"""

from __future__ import annotations

import logging
from typing import Any

from .base import DbError, DbUnavailable, Kind, Row, TableSpec, Value, check_fields, coerce

log = logging.getLogger("ksr.db")

VERSION_TABLE = "ksr_version"


class SqlStore:
    """Base of the SQL backends: subclasses open connections and name their errors."""

    url: str
    mark = "?"  # parameter placeholder
    types: dict[Kind, str] = {"str": "TEXT", "int": "BIGINT", "float": "DOUBLE PRECISION"}

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._conn: Any = None
        self._tables: dict[str, SqlTable] = {}

    # -- subclass hooks -----------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _is_disconnect(self, err: Exception) -> bool:
        raise NotImplementedError

    def _columns(self, table: str) -> list[str] | None:
        """Existing column names of ``table``, None if it does not exist."""
        raise NotImplementedError

    # -- running statements -------------------------------------------------------------------
    def execute(
        self, sql: str, params: tuple[Value, ...] = (), fetch: bool = False
    ) -> tuple[list[tuple[Any, ...]], int]:
        sql = sql.replace("?", self.mark) if self.mark != "?" else sql
        for attempt in (1, 2):
            if self._conn is None:
                try:
                    self._conn = self._connect()
                except Exception as err:
                    raise DbUnavailable(f"{self.describe()}: cannot connect: {err}") from err
            try:
                cur = self._conn.execute(sql, params)
                rows = cur.fetchall() if fetch else []
                return rows, cur.rowcount
            except Exception as err:
                if not self._is_disconnect(err):
                    raise DbError(f"{self.describe()}: {err}") from err
                self.close()
                if attempt == 2:
                    raise DbUnavailable(f"{self.describe()}: connection lost: {err}") from err
                log.warning("%s: connection lost (%s), reconnecting", self.describe(), err)
        raise AssertionError("unreachable")

    def describe(self) -> str:
        return self.url.split("@")[-1]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    # -- tables and migrations ------------------------------------------------------------------
    def table(self, spec: TableSpec) -> SqlTable:
        t = self._tables.get(spec.name)
        if t is None:
            t = SqlTable(self, spec)
            self._migrate(t)
            self._tables[spec.name] = t
        return t

    def _migrate(self, t: SqlTable) -> None:
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {self.prefix}{VERSION_TABLE} "
            "(table_name TEXT PRIMARY KEY, table_version INTEGER NOT NULL)"
        )
        rows, _ = self.execute(
            f"SELECT table_version FROM {self.prefix}{VERSION_TABLE} WHERE table_name = ?",
            (t.name,),
            fetch=True,
        )
        have = int(rows[0][0]) if rows else 0
        spec = t.spec
        if have > spec.version:
            raise DbError(
                f"table {t.name} has schema version {have}, newer than this ksr ({spec.version})"
            )
        cols = self._columns(t.name)
        if cols is None:
            defs = ", ".join(
                f"{f} {self.types[k]}" + (" PRIMARY KEY" if f == spec.key else "")
                for f, k in spec.fields
            )
            self.execute(f"CREATE TABLE {t.name} ({defs})")
        else:
            for f, k in spec.fields:  # version n -> n+1 adds columns; nothing is ever dropped
                if f not in cols:
                    self.execute(f"ALTER TABLE {t.name} ADD COLUMN {f} {self.types[k]}")
        for f in (*spec.indexes, *spec.ordered):
            self.execute(f"CREATE INDEX IF NOT EXISTS {t.name}_{f}_idx ON {t.name} ({f})")
        if have != spec.version:
            self.execute(
                f"INSERT INTO {self.prefix}{VERSION_TABLE} (table_name, table_version) VALUES (?, ?) "
                "ON CONFLICT (table_name) DO UPDATE SET table_version = excluded.table_version",
                (t.name, spec.version),
            )

    def drop(self, name: str) -> None:
        full = self.prefix + name
        self.execute(f"DROP TABLE IF EXISTS {full}")
        if self._columns(f"{self.prefix}{VERSION_TABLE}") is not None:
            self.execute(f"DELETE FROM {self.prefix}{VERSION_TABLE} WHERE table_name = ?", (full,))
        self._tables.pop(name, None)


class SqlTable:
    def __init__(self, store: SqlStore, spec: TableSpec) -> None:
        self.store = store
        self.spec = spec
        self.name = store.prefix + spec.name
        self._names = [f for f, _ in spec.fields]
        self._cols = ", ".join(self._names)
        marks = ", ".join("?" for _ in self._names)
        updates = ", ".join(f"{f} = excluded.{f}" for f in self._names if f != spec.key)
        self._upsert = (
            f"INSERT INTO {self.name} ({self._cols}) VALUES ({marks}) "
            f"ON CONFLICT ({spec.key}) DO UPDATE SET {updates}"
        )
        self._kinds = spec.kinds()

    def _row(self, values: tuple[Any, ...]) -> Row:
        return {f: coerce(v, self._kinds[f]) for f, v in zip(self._names, values, strict=True)}

    def put(self, row: Row) -> None:
        clean = self.spec.clean(row)
        if clean[self.spec.key] is None:
            raise DbError(f"table {self.name}: row without key {self.spec.key}")
        self.store.execute(self._upsert, tuple(clean[f] for f in self._names))

    def get(self, key: str) -> Row | None:
        rows, _ = self.store.execute(
            f"SELECT {self._cols} FROM {self.name} WHERE {self.spec.key} = ?", (key,), fetch=True
        )
        return self._row(rows[0]) if rows else None

    def delete(self, key: str) -> bool:
        _, n = self.store.execute(f"DELETE FROM {self.name} WHERE {self.spec.key} = ?", (key,))
        return n > 0

    def find(self, field: str, value: Value) -> list[Row]:
        check_fields(self.spec, [field])
        rows, _ = self.store.execute(
            f"SELECT {self._cols} FROM {self.name} WHERE {field} = ?", (value,), fetch=True
        )
        return [self._row(r) for r in rows]

    def find_below(self, field: str, limit: float) -> list[Row]:
        check_fields(self.spec, [field])
        rows, _ = self.store.execute(
            f"SELECT {self._cols} FROM {self.name} WHERE {field} IS NOT NULL AND {field} < ?",
            (limit,),
            fetch=True,
        )
        return [self._row(r) for r in rows]

    def delete_where(self, field: str, value: Value) -> int:
        check_fields(self.spec, [field])
        _, n = self.store.execute(f"DELETE FROM {self.name} WHERE {field} = ?", (value,))
        return max(n, 0)

    def all(self) -> list[Row]:
        rows, _ = self.store.execute(f"SELECT {self._cols} FROM {self.name}", fetch=True)
        return [self._row(r) for r in rows]

    def count(self) -> int:
        rows, _ = self.store.execute(f"SELECT COUNT(*) FROM {self.name}", fetch=True)
        return int(rows[0][0])

    def clear(self) -> int:
        _, n = self.store.execute(f"DELETE FROM {self.name}")
        return max(n, 0)
