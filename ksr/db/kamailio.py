"""Kamailio's table layouts (the 5.6 schema kamdbctl creates), as data, and the step that
creates or checks one of them in an SQL store.

A layout lists the columns (name, SQL type as Kamailio declares it, NULL or not, default),
unique constraints, indexes and the schema version Kamailio keeps in its ``version`` table.
``ensure`` runs on the first use of a table in ``layout=kamailio`` stores (see docs/storage.md):

* no table yet: create it (PostgreSQL or SQLite DDL written from the layout) and its
  ``version`` row, as kamdbctl would;
* a table whose ``version`` row matches: use it as it is;
* anything else (another version, no row, ksr's own older layout): refuse with a DbError that
  names the table and both versions, so ksr never writes rows a different schema would misread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import DbError, DbUnavailable, Kind, SchemaMismatch, TableSpec

if TYPE_CHECKING:
    from .sql import SqlStore

VERSION_TABLE = "version"
KSR_VERSION_TABLE = "ksr_version"


@dataclass(frozen=True, slots=True)
class Col:
    name: str
    type: str  # PostgreSQL spelling: INTEGER, SMALLINT, BIGINT, REAL, VARCHAR(n), TEXT, TIMESTAMP
    null: bool = False
    default: str | None = None  # an SQL literal; None: no DEFAULT clause

    @property
    def kind(self) -> Kind:
        t = self.type.upper()
        if t.startswith(("VARCHAR", "TEXT", "CHAR")):
            return "str"
        if t.startswith("TIMESTAMP"):
            return "datetime"
        if t.startswith(("REAL", "DOUBLE", "FLOAT")):
            return "float"
        return "int"


@dataclass(frozen=True, slots=True)
class Layout:
    """One of Kamailio's tables. Every table also has ``id SERIAL PRIMARY KEY``."""

    name: str
    version: int
    cols: tuple[Col, ...]
    unique: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (constraint name suffix, columns)
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (index name suffix, columns)

    def spec(
        self, key: str = "id", conflict: tuple[str, ...] = (), extra: tuple[str, ...] = ()
    ) -> TableSpec:
        """The TableSpec ksr modules use for this table: its columns (``id`` included) keyed
        by ``key``; ``put`` replaces the row matching ``conflict`` (default: the key).
        ``extra``: text columns a deployment added (auth_db load_credentials reads them)."""
        fields: tuple[tuple[str, Kind], ...] = (("id", "int"),) + tuple(
            (c.name, c.kind) for c in self.cols
        )
        known = {f for f, _ in fields}
        fields += tuple((f, "str") for f in dict.fromkeys(extra) if f not in known)
        return TableSpec(
            self.name, key=key, fields=fields, version=self.version, layout=self, conflict=conflict
        )

    def has_unique(self, cols: tuple[str, ...]) -> bool:
        return cols == ("id",) or any(set(c) == set(cols) for _, c in self.unique)


def _c(name: str, type_: str, default: str | None = None, null: bool = False) -> Col:
    return Col(name, type_, null, default)


def _n(name: str, type_: str, default: str | None = "NULL") -> Col:
    """A nullable column."""
    return Col(name, type_, True, default)


V64, V128, V255, V512 = "VARCHAR(64)", "VARCHAR(128)", "VARCHAR(255)", "VARCHAR(512)"
TS, INT = "TIMESTAMP", "INTEGER"

VERSION = Layout(
    "version",
    1,
    (_c("table_name", "VARCHAR(32)"), _c("table_version", INT, "0")),
    unique=(("table_name_idx", ("table_name",)),),
)

SUBSCRIBER = Layout(
    "subscriber",
    7,
    (
        _c("username", V64, "''"),
        _c("domain", V64, "''"),
        _c("password", V64, "''"),
        _c("ha1", V128, "''"),
        _c("ha1b", V128, "''"),
    ),
    unique=(("account_idx", ("username", "domain")),),
    indexes=(("username_idx", ("username",)),),
)

LOCATION = Layout(
    "location",
    9,
    (
        _c("ruid", V64, "''"),
        _c("username", V64, "''"),
        _n("domain", V64),
        _c("contact", V512, "''"),
        _n("received", V128),
        _n("path", V512),
        _c("expires", TS, "'2030-05-28 21:32:15'"),
        _c("q", "REAL", "1.0"),
        _c("callid", V255, "'Default-Call-ID'"),
        _c("cseq", INT, "1"),
        _c("last_modified", TS, "'2000-01-01 00:00:01'"),
        _c("flags", INT, "0"),
        _c("cflags", INT, "0"),
        _c("user_agent", V255, "''"),
        _n("socket", V64),
        _n("methods", INT),
        _n("instance", V255),
        _c("reg_id", INT, "0"),
        _c("server_id", INT, "0"),
        _c("connection_id", INT, "0"),
        _c("keepalive", INT, "0"),
        _c("partition", INT, "0"),
    ),
    unique=(("ruid_idx", ("ruid",)),),
    indexes=(
        ("account_contact_idx", ("username", "domain", "contact")),
        ("expires_idx", ("expires",)),
        ("tcpcon_idx", ("connection_id",)),
        ("connection_idx", ("server_id", "connection_id")),
    ),
)

LOCATION_ATTRS = Layout(
    "location_attrs",
    1,
    (
        _c("ruid", V64, "''"),
        _c("username", V64, "''"),
        _n("domain", V64),
        _c("aname", V64, "''"),
        _c("atype", INT, "0"),
        _c("avalue", V512, "''"),
        _c("last_modified", TS, "'2000-01-01 00:00:01'"),
    ),
    indexes=(
        ("account_record_idx", ("username", "domain", "ruid")),
        ("last_modified_idx", ("last_modified",)),
    ),
)

DIALOG = Layout(
    "dialog",
    7,
    (
        _c("hash_entry", INT),
        _c("hash_id", INT),
        _c("callid", V255),
        _c("from_uri", V255),
        _c("from_tag", V128),
        _c("to_uri", V255),
        _c("to_tag", V128),
        _c("caller_cseq", "VARCHAR(20)"),
        _c("callee_cseq", "VARCHAR(20)"),
        _n("caller_route_set", V512, None),
        _n("callee_route_set", V512, None),
        _c("caller_contact", V255),
        _c("callee_contact", V255),
        _c("caller_sock", V64),
        _c("callee_sock", V64),
        _c("state", INT),
        _c("start_time", INT),
        _c("timeout", INT, "0"),
        _c("sflags", INT, "0"),
        _c("iflags", INT, "0"),
        _n("toroute_name", "VARCHAR(32)", None),
        _c("req_uri", V255),
        _n("xdata", V512, None),
    ),
    indexes=(("hash_idx", ("hash_entry", "hash_id")),),
)

DIALOG_VARS = Layout(
    "dialog_vars",
    1,
    (
        _c("hash_entry", INT),
        _c("hash_id", INT),
        _c("dialog_key", V128),
        _c("dialog_value", V512),
    ),
    indexes=(("hash_idx", ("hash_entry", "hash_id")),),
)

ADDRESS = Layout(
    "address",
    6,
    (
        _c("grp", INT, "1"),
        _c("ip_addr", "VARCHAR(50)"),
        _c("mask", INT, "32"),
        _c("port", "SMALLINT", "0"),
        _n("tag", V64, None),
    ),
)

HTABLE = Layout(
    "htable",
    2,
    (
        _c("key_name", V64, "''"),
        _c("key_type", INT, "0"),
        _c("value_type", INT, "0"),
        _c("key_value", V128, "''"),
        _c("expires", INT, "0"),
    ),
)


def _acc_like(name: str, version: int) -> Layout:
    return Layout(
        name,
        version,
        (
            _c("method", "VARCHAR(16)", "''"),
            _c("from_tag", V128, "''"),
            _c("to_tag", V128, "''"),
            _c("callid", V255, "''"),
            _c("sip_code", "VARCHAR(3)", "''"),
            _c("sip_reason", V128, "''"),
            _c("time", TS),
        ),
        indexes=(("callid_idx", ("callid",)),),
    )


ACC = _acc_like("acc", 5)
MISSED_CALLS = _acc_like("missed_calls", 4)
ACC_CDRS = Layout(
    "acc_cdrs",
    2,
    (
        _c("start_time", TS, "'2000-01-01 00:00:00'"),
        _c("end_time", TS, "'2000-01-01 00:00:00'"),
        _c("duration", "REAL", "0"),
    ),
    indexes=(("start_time_idx", ("start_time",)),),
)

LAYOUTS = {
    t.name: t
    for t in (
        VERSION,
        SUBSCRIBER,
        LOCATION,
        LOCATION_ATTRS,
        DIALOG,
        DIALOG_VARS,
        ADDRESS,
        HTABLE,
        ACC,
        ACC_CDRS,
        MISSED_CALLS,
    )
}


# -- DDL ----------------------------------------------------------------------------------------
def ddl(layout: Layout, table: str, dialect: str) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements for ``layout`` named ``table`` (the name with
    the store's prefix); ``dialect`` is "postgres" or "sqlite"."""
    idcol = (
        "id SERIAL PRIMARY KEY NOT NULL"
        if dialect == "postgres"
        else (
            "id INTEGER PRIMARY KEY NOT NULL"  # SQLite: the rowid, numbered like SERIAL
        )
    )
    parts = [idcol]
    for c in layout.cols:
        typ = "TIMESTAMP WITHOUT TIME ZONE" if c.type == TS else c.type
        part = f"{quote(c.name)} {typ}"
        if c.default is not None:
            part += f" DEFAULT {c.default}"
        if not c.null:
            part += " NOT NULL"
        parts.append(part)
    for suffix, cols in layout.unique:
        parts.append(f"CONSTRAINT {table}_{suffix} UNIQUE ({', '.join(map(quote, cols))})")
    out = [f"CREATE TABLE {table} (\n    " + ",\n    ".join(parts) + "\n)"]
    for suffix, cols in layout.indexes:
        out.append(f"CREATE INDEX {table}_{suffix} ON {table} ({', '.join(map(quote, cols))})")
    return out


def quote(name: str) -> str:
    # "partition" is a keyword in some SQL dialects; quoting is harmless everywhere
    return f'"{name}"' if name in ("partition", "time") else name


# -- create or check ------------------------------------------------------------------------------
def version_error(table: str, found: int, expected: int, extra: str = "") -> SchemaMismatch:
    return SchemaMismatch(
        f"table {table}: invalid version {found} found in table {VERSION_TABLE}, "
        f"expected {expected} (Kamailio 5.6 schema){extra}"
    )


def ensure(store: SqlStore, spec: TableSpec) -> None:
    """Create ``spec``'s Kamailio table if it is missing, else check its version row.

    Several nodes starting together on one database race to create the same table: the loser
    fails on the catalog's unique index, or finds the table before its version row. So a
    failure is tried again (twice, 0.3 s apart) before it counts."""
    for attempt in range(ENSURE_TRIES):
        try:
            _ensure(store, spec)
            return
        except DbUnavailable:
            raise
        except DbError:
            if attempt == ENSURE_TRIES - 1:
                raise
            time.sleep(ENSURE_PAUSE)


ENSURE_TRIES = 3
ENSURE_PAUSE = 0.3


def _ensure(store: SqlStore, spec: TableSpec) -> None:
    layout = spec.layout
    assert layout is not None
    vt = store.prefix + VERSION_TABLE
    name = store.prefix + spec.name
    if store.columns(vt) is None:
        for stmt in ddl(VERSION, vt, store.dialect):
            store.execute(stmt)
        store.execute(
            f"INSERT INTO {vt} (table_name, table_version) VALUES (?, ?)",
            (VERSION_TABLE, VERSION.version),
        )
    # Kamailio keys version rows by the table name it was configured with (no prefix here:
    # a prefix only separates installations sharing one database, each with its own version).
    rows, _ = store.execute(
        f"SELECT table_version FROM {vt} WHERE table_name = ?", (spec.name,), fetch=True
    )
    have = int(rows[0][0]) if rows else None
    exists = store.columns(name) is not None
    if not exists:
        if have is not None and have != layout.version:
            raise version_error(spec.name, have, layout.version, " (and the table is missing)")
        for stmt in ddl(layout, name, store.dialect):
            store.execute(stmt)
        if have is None:
            store.execute(
                f"INSERT INTO {vt} (table_name, table_version) VALUES (?, ?)",
                (spec.name, layout.version),
            )
        return
    if have == layout.version:
        return
    if have is None:
        own = _ksr_version(store, name)
        if own is not None:
            raise SchemaMismatch(
                f"table {spec.name}: has ksr's own layout (ksr_version {own}), not Kamailio's "
                f"(expected version {layout.version} in table {VERSION_TABLE}); keep it by adding "
                f"?layout=ksr to the db_url, or move it with `ksr db convert DB_URL`"
            )
        raise version_error(spec.name, 0, layout.version, " (the table has no version row)")
    raise version_error(spec.name, have, layout.version)


def _ksr_version(store: SqlStore, name: str) -> int | None:
    kt = store.prefix + KSR_VERSION_TABLE
    if store.columns(kt) is None:
        return None
    rows, _ = store.execute(
        f"SELECT table_version FROM {kt} WHERE table_name = ?", (name,), fetch=True
    )
    return int(rows[0][0]) if rows else None
