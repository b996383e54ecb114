"""Statistics: counters and gauges that modules register, named ``group:name`` as in Kamailio,
and labelled histograms (latencies). Each statistic carries a description (the HELP text of
/metrics) and, for gauges, how the values of worker processes combine (docs/metrics.md).

A counter is a plain attribute bump on the hot path (``c.value += 1``); everything else is
paid when the statistics are read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# how the values of ``ksr run -n N`` workers make the server's value (ksr/core/stats_view.py)
SUM = "sum"  # per-worker state (dialogs, transactions, memory of each process): added up
ONE = "one"  # the same in every worker (a setting, a shared table, the machine): not added up


class Counter:
    __slots__ = ("value", "resettable", "doc")

    def __init__(self, resettable: bool = True, doc: str = "") -> None:
        self.value = 0
        self.resettable = resettable
        self.doc = doc

    def inc(self, n: int = 1) -> None:
        self.value += n


class Gauge:
    __slots__ = ("read", "doc", "merge")

    def __init__(self, read: Callable[[], int], doc: str, merge: str) -> None:
        self.read = read
        self.doc = doc
        self.merge = merge


class HistogramSeries:
    """One label set of a histogram: observations counted per bucket (not cumulative; the
    last slot is +Inf), their sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        # bisect_left written out: most observations (route runs, request times) fall in the
        # first buckets, and compiled, a loop costs less than the call into bisect
        bounds = self.bounds
        i = 0
        n = len(bounds)
        while i < n and bounds[i] < v:
            i += 1
        self.counts[i] += 1
        self.sum += v


class Histogram:
    """A histogram family with label names, e.g. ``sip_request_duration_seconds{method}``."""

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...]
    ) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        self.bounds = tuple(sorted(bounds))
        self.series: dict[tuple[str, ...], HistogramSeries] = {}

    def child(self, *values: str) -> HistogramSeries:
        s = self.series.get(values)
        if s is None:
            s = self.series[values] = HistogramSeries(self.bounds)
        return s

    def observe(self, v: float, *values: str) -> None:
        self.child(*values).observe(v)


class Stats:
    def __init__(self) -> None:
        self._counters: dict[str, dict[str, Counter]] = {}
        self._gauges: dict[str, dict[str, Gauge]] = {}
        self._docs: dict[tuple[str, str], str] = {}
        self.histograms: dict[str, Histogram] = {}
        self.view: Any = None  # the whole server's view (ksr/core/stats_view.py), made on use

    def counter(self, group: str, name: str, resettable: bool = True, doc: str = "") -> Counter:
        grp = self._counters.setdefault(group, {})
        c = grp.get(name)
        if c is None:
            c = grp[name] = Counter(resettable, doc)
        elif doc and not c.doc:
            c.doc = doc
        return c

    def gauge(
        self, group: str, name: str, read: Callable[[], int], doc: str = "", merge: str = SUM
    ) -> None:
        """A value computed when read (active dialogs, registered users...). Never reset.
        ``merge``: SUM when each worker holds its own part, ONE when every worker reads the
        same value (a setting, a table all workers share)."""
        self._gauges.setdefault(group, {})[name] = Gauge(read, doc, merge)

    def histogram(
        self, name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...]
    ) -> Histogram:
        h = self.histograms.get(name)
        if h is None:
            h = self.histograms[name] = Histogram(name, doc, labels, bounds)
        return h

    def describe(self, group: str, name: str, doc: str) -> None:
        """The description of a statistic registered elsewhere (or of a family of names)."""
        self._docs[(group, name)] = doc

    def doc(self, group: str, name: str) -> str:
        c = self._counters.get(group, {}).get(name)
        if c is not None and c.doc:
            return c.doc
        g = self._gauges.get(group, {}).get(name)
        if g is not None and g.doc:
            return g.doc
        return self._docs.get((group, name), "")

    def kind(self, group: str, name: str) -> str | None:
        """ "counter", "gauge" or None (not registered here)."""
        if name in self._counters.get(group, {}):
            return "counter"
        if name in self._gauges.get(group, {}):
            return "gauge"
        return None

    def merge_mode(self, group: str, name: str) -> str:
        g = self._gauges.get(group, {}).get(name)
        return g.merge if g is not None else SUM

    def groups(self) -> list[str]:
        return sorted(set(self._counters) | set(self._gauges))

    def counter_items(self, group: str) -> list[tuple[str, int]]:
        return [(n, c.value) for n, c in self._counters.get(group, {}).items()]

    def gauge_items(self, group: str, merge: str | None = None) -> list[tuple[str, int]]:
        """Gauges read now (all, or those of one merge mode); a failing read gives 0."""
        out: list[tuple[str, int]] = []
        for n, g in self._gauges.get(group, {}).items():
            if merge is not None and g.merge != merge:
                continue
            try:
                out.append((n, int(g.read())))
            except Exception:
                out.append((n, 0))
        return out

    def items(self, group: str) -> list[tuple[str, int]]:
        return sorted(self.counter_items(group) + self.gauge_items(group))

    def value(self, group: str, name: str) -> int | None:
        c = self._counters.get(group, {}).get(name)
        if c is not None:
            return c.value
        g = self._gauges.get(group, {}).get(name)
        if g is None:
            return None
        try:
            return int(g.read())
        except Exception:
            return 0

    def select(self, spec: str) -> list[tuple[str, str, int]]:
        """``all``, ``group:`` or ``group:name`` (or a bare name searched in every group)."""
        return select(spec, self.groups(), self.items, self.value)

    def reset(self, spec: str) -> int:
        n = 0
        for g, name, _ in self.select(spec):
            c = self._counters.get(g, {}).get(name)
            if c is not None and c.resettable:
                c.value = 0
                n += 1
        return n


def select(
    spec: str,
    groups: list[str],
    items: Callable[[str], list[tuple[str, int]]],
    value: Callable[[str, str], int | None],
) -> list[tuple[str, str, int]]:
    """Kamailio's statistic selectors over any source of values (this worker's or the whole
    server's): ``all``, ``group:``, ``group:name`` or a bare name searched in every group."""
    out: list[tuple[str, str, int]] = []
    if spec == "all":
        for g in groups:
            out.extend((g, n, v) for n, v in items(g))
    elif spec.endswith(":"):
        g = spec[:-1]
        out.extend((g, n, v) for n, v in items(g))
    elif ":" in spec:
        g, _, name = spec.partition(":")
        v = value(g, name)
        if v is not None:
            out.append((g, name, v))
    else:
        for g in groups:
            v = value(g, spec)
            if v is not None:
                out.append((g, spec, v))
    return out
