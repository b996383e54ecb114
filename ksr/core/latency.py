"""Latency histograms of the server (exported by xhttp_prom, docs/metrics.md):

- ``sip_request_duration_seconds{method}``: a request's arrival to the final reply sent for it,
  stateless (sl, the core) or by its transaction (tm);
- ``route_duration_seconds{route}``: one run of a script route or event callback;
- ``db_query_duration_seconds{backend,operation}``: one call into a storage backend.

Label values are bounded: methods outside Kamailio's list count as ``other`` (an attacker must
not be able to grow the series), routes are the script's function names.
"""

from __future__ import annotations

import time

from .core_stats import REQUEST_METHODS
from .stats import HistogramSeries, Stats

# an INVITE rings for seconds: the request buckets reach a minute
REQUEST_BOUNDS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
REQUEST_BOUNDS += (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ROUTE_BOUNDS: tuple[float, ...] = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005)
ROUTE_BOUNDS += (0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
DB_BOUNDS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025)
DB_BOUNDS += (0.05, 0.1, 0.25, 1.0, 2.5)
MAX_ROUTES = 200  # route names kept apart; more count as "other"


class Latency:
    __slots__ = ("request", "route", "db", "_methods", "routes")

    def __init__(self, stats: Stats) -> None:
        self.request = stats.histogram(
            "sip_request_duration_seconds",
            "seconds from a request's arrival to the final reply sent for it",
            ("method",),
            REQUEST_BOUNDS,
        )
        self.route = stats.histogram(
            "route_duration_seconds",
            "seconds one run of a script route or event callback took",
            ("route",),
            ROUTE_BOUNDS,
        )
        self.db = stats.histogram(
            "db_query_duration_seconds",
            "seconds one call into a storage backend took",
            ("backend", "operation"),
            DB_BOUNDS,
        )
        self._methods: dict[str, HistogramSeries] = {}
        self.routes: dict[str, HistogramSeries] = {}  # by route name (Scripts reads it)

    def request_done(self, method: str, arrived: float) -> None:
        """A final reply left for a request that arrived at ``arrived`` (time.time())."""
        series = self._methods.get(method)
        if series is None:
            label = method if method in REQUEST_METHODS else "other"
            series = self._methods[method] = self.request.child(label)
            if len(self._methods) > 2 * len(REQUEST_METHODS):
                self._methods.clear()  # odd methods: keep the cache small
        series.observe(time.time() - arrived)

    def route_done(self, name: str, seconds: float) -> None:
        self.route_series(name).observe(seconds)

    def route_series(self, name: str) -> HistogramSeries:
        """The series of route ``name`` (Scripts keeps them: a route run is timed inline)."""
        series = self.routes.get(name)
        if series is None:
            label = name if len(self.routes) < MAX_ROUTES else "other"
            series = self.routes[name] = self.route.child(label)
        return series
