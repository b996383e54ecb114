"""Call times of the storage backends for the statistics: a store whose tables time every call
into ``db_query_duration_seconds{backend,operation}`` (ksr/core/latency.py). Everything else is
passed through to the backend's own objects."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .base import Store, Table, TableSpec

OPERATIONS = ("put", "get", "delete", "find", "find_below", "delete_where", "all", "count", "clear")


class TimedTable:
    def __init__(self, table: Table, observe: Callable[[str, float], None]) -> None:
        self.inner = table  # the backend's own table
        self.spec = table.spec
        for op in OPERATIONS:  # bound once, not per call
            fn = getattr(table, op, None)
            if fn is not None:
                setattr(self, op, _timed(op, fn, observe))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _timed(
    op: str, fn: Callable[..., Any], observe: Callable[[str, float], None]
) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            observe(op, time.perf_counter() - t0)

    return timed


class TimedStore:
    """Wraps a store; ``table()`` gives tables that time their calls."""

    def __init__(self, store: Store, backend: str, histogram: Any) -> None:
        self._store = store
        self._series: dict[str, Any] = {
            op: histogram.child(backend, op) for op in OPERATIONS
        }  # made once: a call pays one dict lookup and one observe
        self._tables: dict[str, TimedTable] = {}
        self.url = store.url

    def _observe(self, op: str, seconds: float) -> None:
        self._series[op].observe(seconds)

    def table(self, spec: TableSpec) -> TimedTable:
        inner = self._store.table(spec)
        t = self._tables.get(spec.name)
        if t is None or t.inner is not inner:
            t = self._tables[spec.name] = TimedTable(inner, self._observe)
        return t

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
