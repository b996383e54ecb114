"""What SQLite and PostgreSQL share: tables as SQL tables, one statement per call, autocommit.

Every statement runs in autocommit mode, so a ``put`` that returned is on disk (SQLite WAL) or
committed (PostgreSQL) — what makes a registration survive ``kill -9``. A broken connection is
dropped and reopened on the next call; an idempotent statement is retried once right away, so a
server that restarted between two calls is not even noticed.
"""

from __future__ import annotations

import logging
from typing import Any

from ksr.suspend.backend import Backend, Limits, Slot
from ksr.suspend.locks import KeyedLock

from . import kamailio
from .base import (
    DbError,
    DbUnavailable,
    Kind,
    Row,
    SchemaMismatch,
    TableSpec,
    Value,
    check_fields,
    coerce,
)

log = logging.getLogger("ksr.db")


def _close(slot: Slot) -> None:
    conn, slot.conn = slot.conn, None
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass


VERSION_TABLE = "ksr_version"


class SqlStore:
    """Base of the SQL backends: subclasses open connections and name their errors."""

    url: str
    mark = "?"  # parameter placeholder
    dialect = ""  # "postgres" or "sqlite" (Kamailio's DDL differs a little)
    types: dict[Kind, str] = {
        "str": "TEXT",
        "int": "BIGINT",
        "float": "DOUBLE PRECISION",
        "datetime": "DOUBLE PRECISION",
    }

    def __init__(
        self, url: str, prefix: str, layout: str = "kamailio", limits: Limits | None = None
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.layout = layout
        self._tables: dict[str, SqlTable] = {}
        self._creating = KeyedLock()
        # statements run on a pool of connections, a thread each (ksr/suspend/backend.py)
        self.io = Backend(
            self.describe(),
            limits or Limits(),
            DbUnavailable,
            lambda err: isinstance(err, DbUnavailable),
            self._abort,
        )

    # -- subclass hooks -----------------------------------------------------------------------
    def _connect(self, slot: Slot) -> Any:
        """A new connection for ``slot`` (in its pool thread, or in the loop: driver "loop")."""
        raise NotImplementedError

    def _is_disconnect(self, err: Exception, conn: Any) -> bool:
        raise NotImplementedError

    def _abort(self, conn: Any) -> None:
        """Make a call blocked on ``conn`` return now (from another thread)."""
        raise NotImplementedError

    def _columns(self, table: str) -> list[str] | None:
        """Existing column names of ``table``, None if it does not exist."""
        raise NotImplementedError

    def columns(self, table: str) -> list[str] | None:
        """Existing column names of ``table`` (a full name, prefix included), None if it does
        not exist."""
        return self._columns(table)

    def enc_time(self, t: float) -> Any:
        """A unix time as Kamailio stores a DATETIME column in this database."""
        raise NotImplementedError

    def dec_time(self, v: Any) -> float:
        """A DATETIME column's value (as Kamailio or kamctl wrote it) as a unix time."""
        raise NotImplementedError

    # -- running statements -------------------------------------------------------------------
    def execute(
        self, sql: str, params: tuple[Value, ...] = (), fetch: bool = False
    ) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement. In a route that may suspend, the route waits and the worker
        goes on; elsewhere the caller blocks (at most the backend's query timeout)."""
        sql = sql.replace("?", self.mark) if self.mark != "?" else sql
        return self.io.run(lambda slot: self._execute(slot, sql, params, fetch))

    def _execute(
        self, slot: Slot, sql: str, params: tuple[Value, ...], fetch: bool
    ) -> tuple[list[tuple[Any, ...]], int]:
        """On the slot's connection (made or remade here): in a pool thread, or in the loop's
        thread with waits that suspend the route (driver "loop")."""
        for attempt in (1, 2):
            if slot.conn is None:
                try:
                    slot.conn = self._connect(slot)
                except DbUnavailable:
                    raise
                except Exception as err:
                    raise DbUnavailable(f"{self.describe()}: cannot connect: {err}") from err
            try:
                cur = slot.conn.execute(sql, params)
                rows = cur.fetchall() if fetch else []
                return rows, cur.rowcount
            except DbUnavailable:  # no answer in time, or interrupted: the connection is unusable
                _close(slot)
                raise
            except Exception as err:
                if not self._is_disconnect(err, slot.conn):
                    raise DbError(f"{self.describe()}: {err}") from err
                _close(slot)
                if attempt == 2:
                    raise DbUnavailable(f"{self.describe()}: connection lost: {err}") from err
                log.warning("%s: connection lost (%s), reconnecting", self.describe(), err)
        raise AssertionError("unreachable")

    def describe(self) -> str:
        return self.url.split("@")[-1]

    def close(self) -> None:
        for slot in self.io.slots():
            _close(slot)
        self.io.close()

    # -- tables and migrations ------------------------------------------------------------------
    def table(self, spec: TableSpec) -> SqlTable:
        t = self._tables.get(spec.name)
        if t is None:
            # routes waiting on the first use of a table: one of them creates it
            locked = self._creating.acquire(spec.name)
            try:
                t = self._tables.get(spec.name) or self._create(spec)
            finally:
                if locked:
                    self._creating.release(spec.name)
        return t

    def _create(self, spec: TableSpec) -> SqlTable:
        t: SqlTable
        if spec.layout is not None:
            t = KamSqlTable(self, spec)
            kamailio.ensure(self, spec)
        else:
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
            raise SchemaMismatch(
                f"table {t.name} has schema version {have}, newer than this ksr ({spec.version})"
            )
        cols = self._columns(t.name)
        if cols is not None and have == 0:
            self._refuse_kamailio_table(t.spec)
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

    def _refuse_kamailio_table(self, spec: TableSpec) -> None:
        """ksr's own layout must not alter a table Kamailio's schema created (same name)."""
        kam = self.prefix + kamailio.VERSION_TABLE
        if self._columns(kam) is None:
            return
        rows, _ = self.execute(
            f"SELECT table_version FROM {kam} WHERE table_name = ?", (spec.name,), fetch=True
        )
        if rows:
            raise SchemaMismatch(
                f"table {spec.name}: is Kamailio's (version {rows[0][0]} in table "
                f"{kamailio.VERSION_TABLE}); ksr's own layout of it cannot share the name: use "
                "layout=kamailio in the db_url or another table name"
            )

    def drop(self, name: str) -> None:
        full = self.prefix + name
        self.execute(f"DROP TABLE IF EXISTS {full}")
        if self._columns(f"{self.prefix}{VERSION_TABLE}") is not None:
            self.execute(f"DELETE FROM {self.prefix}{VERSION_TABLE} WHERE table_name = ?", (full,))
        kam = self.prefix + kamailio.VERSION_TABLE
        if name != kamailio.VERSION_TABLE and self._columns(kam) is not None:
            self.execute(f"DELETE FROM {kam} WHERE table_name = ?", (name,))
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


class KamSqlTable(SqlTable):
    """A table in one of Kamailio's layouts: a SERIAL ``id`` the database numbers, DATETIME
    columns kept as Kamailio keeps them, ``put`` replacing the row that matches the spec's
    ``conflict`` fields, and lookups on several columns (``select``, ``delete_match``)."""

    def __init__(self, store: SqlStore, spec: TableSpec) -> None:
        self.store = store
        self.spec = spec
        self.name = store.prefix + spec.name
        self._kinds = spec.kinds()
        self._names = [f for f, _ in spec.fields]
        self._cols = ", ".join(map(kamailio.quote, self._names))
        self._times = [f for f, k in spec.fields if k == "datetime"]
        self.conflict = spec.conflict or (spec.key,)
        layout = spec.layout
        assert layout is not None
        self._unique = layout.has_unique(self.conflict)

    def _row(self, values: tuple[Any, ...]) -> Row:
        row = dict(zip(self._names, values, strict=True))
        for f in self._times:
            v = row[f]
            if v is not None:
                row[f] = self.store.dec_time(v)
        return {f: coerce(v, self._kinds[f]) for f, v in row.items()}

    def _values(self, row: Row, names: list[str]) -> tuple[Value, ...]:
        out: list[Any] = []
        for f in names:
            v = coerce(row.get(f), self._kinds[f])
            if f in self._times and v is not None:
                v = self.store.enc_time(float(v))
            out.append(v)
        return tuple(out)

    def _where(self, where: Row) -> tuple[str, tuple[Value, ...]]:
        check_fields(self.spec, where)
        parts: list[str] = []
        present: list[str] = []
        for f, v in where.items():
            if v is None:
                parts.append(f"{kamailio.quote(f)} IS NULL")
            else:
                parts.append(f"{kamailio.quote(f)} = ?")
                present.append(f)
        return " AND ".join(parts) or "1 = 1", self._values(where, present)

    def insert(self, row: Row) -> None:
        """A new row (its ``id`` numbered by the database unless the row has one)."""
        names = [f for f in self._names if f != "id" or row.get("id") is not None]
        names = [f for f in names if f in row or f == "id"]
        cols = ", ".join(map(kamailio.quote, names))
        marks = ", ".join("?" for _ in names)
        self.store.execute(
            f"INSERT INTO {self.name} ({cols}) VALUES ({marks})", self._values(row, names)
        )

    def put(self, row: Row) -> None:
        """Replace the row whose ``conflict`` fields match, or insert it. Fields the row does
        not name keep their value (or the column default)."""
        for f in self.conflict:
            if row.get(f) is None and f == "id":
                self.insert(row)
                return
        names = [f for f in self._names if f in row and f != "id"]
        if self._unique:
            sets = [f for f in names if f not in self.conflict]
            cols = ", ".join(map(kamailio.quote, names))
            marks = ", ".join("?" for _ in names)
            target = ", ".join(map(kamailio.quote, self.conflict))
            updates = ", ".join(f"{kamailio.quote(f)} = excluded.{kamailio.quote(f)}" for f in sets)
            action = f"DO UPDATE SET {updates}" if sets else "DO NOTHING"
            self.store.execute(
                f"INSERT INTO {self.name} ({cols}) VALUES ({marks}) "
                f"ON CONFLICT ({target}) {action}",
                self._values(row, names),
            )
            return
        # no unique constraint to lean on (Kamailio's dialog table): update, else insert
        cond, params = self._where({f: row.get(f) for f in self.conflict})
        sets = [f for f in names if f not in self.conflict]
        assign = ", ".join(f"{kamailio.quote(f)} = ?" for f in sets)
        _, n = self.store.execute(
            f"UPDATE {self.name} SET {assign} WHERE {cond}", self._values(row, sets) + params
        )
        if n <= 0:
            self.insert(row)

    def get(self, key: str) -> Row | None:
        rows = self.select({self.spec.key: key})
        return rows[0] if rows else None

    def delete(self, key: str) -> bool:
        return self.delete_match({self.spec.key: key}) > 0

    def select(self, where: Row) -> list[Row]:
        """Rows whose fields equal ``where``'s values (None: IS NULL)."""
        cond, params = self._where(where)
        rows, _ = self.store.execute(
            f"SELECT {self._cols} FROM {self.name} WHERE {cond}", params, fetch=True
        )
        return [self._row(r) for r in rows]

    def delete_match(self, where: Row) -> int:
        cond, params = self._where(where)
        _, n = self.store.execute(f"DELETE FROM {self.name} WHERE {cond}", params)
        return max(n, 0)

    def find(self, field: str, value: Value) -> list[Row]:
        return self.select({field: value})

    def find_below(self, field: str, limit: float) -> list[Row]:
        check_fields(self.spec, [field])
        lim: Any = self.store.enc_time(limit) if field in self._times else limit
        q = kamailio.quote(field)
        rows, _ = self.store.execute(
            f"SELECT {self._cols} FROM {self.name} WHERE {q} IS NOT NULL AND {q} < ?",
            (lim,),
            fetch=True,
        )
        return [self._row(r) for r in rows]

    def delete_where(self, field: str, value: Value) -> int:
        return self.delete_match({field: value})
