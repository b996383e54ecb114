"""Call times of the storage backends for the statistics: a store whose tables time every call
into ``db_query_duration_seconds{backend,operation}`` (ksr/core/latency.py). Everything else is
passed through to the backend's own objects."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .base import Store, Table, TableSpec

OPERATIONS: tuple[str, ...] = ("put", "get", "delete", "find", "find_below", "delete_where", "all")
OPERATIONS += ("count", "clear")
# Kamailio-layout tables (ksr/db/kamailio.py) add these
OPERATIONS += ("insert", "select", "delete_match")


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
        self._backend = backend
        self._histogram = histogram
        self._series: dict[str, Any] = {}  # made on first use: no empty series in /metrics
        self._tables: dict[str, TimedTable] = {}
        self.url = store.url

    def _observe(self, op: str, seconds: float) -> None:
        series = self._series.get(op)
        if series is None:
            series = self._series[op] = self._histogram.child(self._backend, op)
        series.observe(seconds)

    def table(self, spec: TableSpec) -> TimedTable:
        inner = self._store.table(spec)
        t = self._tables.get(spec.name)
        if t is None or t.inner is not inner:
            t = self._tables[spec.name] = TimedTable(inner, self._observe)
        return t

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
