"""ksr storage: one small interface (named tables of rows) over SQLite, PostgreSQL and Redis.

    store = open_store("sqlite://./ksr.sqlite")       # or postgres://..., redis://...
    t = store.table(TableSpec("dialog", key="id", fields=(("id", "str"), ("state", "int"))))
    t.put({"id": "a1", "state": 4}); t.get("a1"); t.find("state", 4); t.delete("a1")

Modules share one store per URL through ``store_for(server, url)``. See docs/storage.md.
"""

from __future__ import annotations

from typing import Any

from .base import (
    DbError,
    DbUnavailable,
    KamTable,
    Kind,
    Row,
    SchemaMismatch,
    Store,
    Table,
    TableSpec,
    Value,
)
from .url import DbUrl, parse_db_url

# The embedded default: a file in the working directory, writable by whoever runs ksr.
DEFAULT_DB_URL = "sqlite://./ksr.sqlite"

__all__ = [
    "DEFAULT_DB_URL",
    "DbError",
    "DbUnavailable",
    "DbUrl",
    "KamTable",
    "Kind",
    "Row",
    "SchemaMismatch",
    "Store",
    "Table",
    "TableSpec",
    "Value",
    "open_store",
    "parse_db_url",
    "store_for",
]


def open_store(url: str) -> Store:
    """A store for ``url``. Opening never connects: the first call does (so a missing server
    is reported where it is used, as DbUnavailable)."""
    u = parse_db_url(url)
    if u.scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(u.target, u.prefix, u.layout, u.limits)
    if u.scheme == "postgres":
        from .postgres import PostgresStore

        return PostgresStore(u.target, u.prefix, u.layout, u.limits)
    from .redis_store import RedisStore

    return RedisStore(u.target, u.prefix, u.limits)


def store_for(server: Any, url: str) -> Store:
    """The store for ``url`` shared by every module of this server (``server.db_stores``)."""
    stores: dict[str, Any] = server.db_stores
    s = stores.get(url)
    if s is None:
        s = stores[url] = _timed(server, open_store(url), url)
    return s


def _timed(server: Any, store: Store, url: str) -> Store:
    """Time the calls of a server's store for the statistics (ksr/db/timing.py)."""
    latency = getattr(server, "latency", None)
    if latency is None:
        return store
    from .timing import TimedStore

    return TimedStore(store, parse_db_url(url).scheme, latency.db)
