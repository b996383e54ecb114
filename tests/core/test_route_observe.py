"""A route run's time lands in the bucket bisect_left gives (HistogramSeries.observe, which Scripts calls per run)."""

from __future__ import annotations

from bisect import bisect_left

from ksr.core.latency import ROUTE_BOUNDS
from ksr.core.stats import HistogramSeries


def test_observe_files_as_bisect_left() -> None:
    times = [0.0, 0.00001, *ROUTE_BOUNDS, 0.00007, 0.003, 0.9, 1.5, 1e9]
    series = HistogramSeries(ROUTE_BOUNDS)
    want = [0] * (len(ROUTE_BOUNDS) + 1)
    for t in times:
        series.observe(t)
        want[bisect_left(ROUTE_BOUNDS, t)] += 1
    assert series.counts == want
    assert series.sum == sum(times)
