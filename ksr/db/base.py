"""The storage interface every backend implements: named tables of rows keyed by one field.

A row is a flat dict of ``str``/``int``/``float``/``None`` values. A table is declared once by a
``TableSpec`` (its fields, key, indexed fields and a schema version); the backend creates it and
migrates it forward when the version grows. Calls are synchronous (see docs/storage.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, SupportsFloat, SupportsInt

if TYPE_CHECKING:
    from .kamailio import Layout

Value = str | int | float | None
Row = dict[str, Value]
# "datetime": a unix time (float) in rows; SQL stores of Kamailio's layout keep it as Kamailio
# does (PostgreSQL: local-time TIMESTAMP; SQLite: julian day), other stores as a float.
Kind = Literal["str", "int", "float", "datetime"]


class DbError(Exception):
    """A storage call failed (bad query, constraint, corrupt data)."""


class SchemaMismatch(DbError):
    """A table's stored schema is not the one this ksr reads and writes (wrong version, other
    layout). Nothing was written; a module refuses to start or answers 500."""


class DbUnavailable(DbError):
    """The backend cannot be reached now (down, no answer in time, overloaded). The next call
    tries to reconnect. ``retry_after``: seconds until the backend is tried again, when known
    (a REGISTER refused for it gets that Retry-After)."""

    retry_after: int | None = None


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    key: str
    fields: tuple[tuple[str, Kind], ...]  # includes the key field
    indexes: tuple[str, ...] = ()  # fields looked up by equality (find, delete_where)
    ordered: tuple[str, ...] = ()  # numeric fields looked up by range (find_below)
    version: int = 1
    layout: Layout | None = None  # Kamailio's table layout (ksr/db/kamailio.py), SQL only
    conflict: tuple[str, ...] = ()  # fields whose match ``put`` replaces (default: the key)

    def kinds(self) -> dict[str, Kind]:
        return dict(self.fields)

    def renamed(self, name: str) -> TableSpec:
        return dataclasses.replace(self, name=name)

    def clean(self, row: Row) -> Row:
        """The row restricted to the declared fields, values coerced to their kinds."""
        out: Row = {}
        for f, kind in self.fields:
            out[f] = coerce(row.get(f), kind)
        return out


def coerce(v: object, kind: Kind) -> Value:
    if v is None:
        return None
    # the usual values first: isinstance() against a Protocol below costs microseconds
    if type(v) is str and kind == "str":
        return v
    if type(v) is int or type(v) is float:
        return str(v) if kind == "str" else int(v) if kind == "int" else float(v)
    if kind == "datetime":
        kind = "float"
    if isinstance(v, bytes):
        v = v.decode("utf-8", "surrogateescape")
    if kind == "str":
        return str(v)
    if isinstance(v, str):
        if kind == "int":
            return int(float(v)) if "." in v else int(v)
        return float(v)
    if kind == "int" and isinstance(v, SupportsInt):
        return int(v)
    if kind == "float" and isinstance(v, SupportsFloat):
        return float(v)
    raise TypeError(f"cannot read {v!r} as {kind}")


class Table(Protocol):
    spec: TableSpec

    def put(self, row: Row) -> None:
        """Insert or replace the row with this key."""

    def get(self, key: str) -> Row | None: ...

    def delete(self, key: str) -> bool:
        """True if a row was removed (so concurrent removers can tell who did it)."""

    def find(self, field: str, value: Value) -> list[Row]:
        """Rows whose indexed ``field`` equals ``value``."""

    def find_below(self, field: str, limit: float) -> list[Row]:
        """Rows whose ordered ``field`` is non-null and below ``limit``."""

    def delete_where(self, field: str, value: Value) -> int: ...

    def all(self) -> list[Row]: ...

    def count(self) -> int: ...

    def clear(self) -> int: ...


class KamTable(Table, Protocol):
    """A table in one of Kamailio's layouts (SQL stores): rows matched on several columns."""

    def select(self, where: Row) -> list[Row]:
        """Rows whose fields equal ``where``'s values (None: IS NULL)."""

    def insert(self, row: Row) -> None:
        """A new row, its serial ``id`` numbered by the database."""

    def delete_match(self, where: Row) -> int: ...


class Store(Protocol):
    url: str
    layout: str  # "kamailio" (Kamailio's tables, SQL) or "ksr" (ksr's own)

    def table(self, spec: TableSpec) -> Table:
        """The table for ``spec``, created or migrated on first use."""

    def drop(self, name: str) -> None:
        """Remove a table and its version entry (tests and tooling)."""

    def close(self) -> None: ...


def check_fields(spec: TableSpec, names: Iterable[str]) -> None:
    known = spec.kinds()
    for n in names:
        if n not in known:
            raise DbError(f"table {spec.name}: unknown field {n!r}")
