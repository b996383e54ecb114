"""User-defined Prometheus metrics of xhttp_prom (``xhttp_prom_counter`` ... definitions and the
``counter_inc_l1``-style KSR functions): their values in one worker, and how the values of all
workers combine (``to_json``/``merge_json``)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_:]")


def metric_name(text: str) -> str:
    """A valid Prometheus metric name (other characters become ``_``)."""
    name = _BAD_CHARS.sub("_", text)
    return "_" + name if name[:1].isdigit() else name


@dataclass
class Family:
    """One metric with its label names and a value (or histogram state) per label set."""

    kind: str  # counter, gauge, histogram
    name: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    values: dict[tuple[str, ...], float] = field(default_factory=dict)
    hist: dict[tuple[str, ...], list[float]] = field(
        default_factory=dict
    )  # bucket counts.., sum, count
    touched: dict[tuple[str, ...], float] = field(default_factory=dict)
    set_at: dict[tuple[str, ...], float] = field(default_factory=dict)  # gauges: wall clock

    def add(self, key: tuple[str, ...], n: float, now: float) -> None:
        self.values[key] = self.values.get(key, 0) + n
        self.touched[key] = now

    def set(self, key: tuple[str, ...], v: float, now: float) -> None:
        self.values[key] = v
        self.touched[key] = now
        self.set_at[key] = time.time()  # the newest value of any worker wins

    def observe(self, key: tuple[str, ...], v: float, now: float) -> None:
        h = self.hist.setdefault(key, [0.0] * (len(self.buckets) + 2))
        for i, upper in enumerate(self.buckets):
            if v <= upper:
                h[i] += 1
        h[-2] += v
        h[-1] += 1
        self.touched[key] = now

    def reset(self, key: tuple[str, ...]) -> None:
        if key in self.values:
            self.values[key] = 0
        if key in self.hist:
            self.hist[key] = [0.0] * (len(self.buckets) + 2)

    def expire(self, before: float) -> None:
        for key in [k for k, t in self.touched.items() if t < before]:
            self.values.pop(key, None)
            self.hist.pop(key, None)
            self.set_at.pop(key, None)
            del self.touched[key]

    def to_json(self) -> dict[str, Any]:
        """This worker's values: counters/gauges as [labels, value, set_at], histograms as
        [labels, cumulative bucket counts..., sum, count]."""
        if self.kind == "histogram":
            return {"h": [[list(k), h] for k, h in self.hist.items()]}
        return {"v": [[list(k), v, self.set_at.get(k, 0.0)] for k, v in self.values.items()]}


def merge_json(kind: str, parts: list[dict[str, Any]]) -> dict[tuple[str, ...], Any]:
    """One family's values over all workers: counters and histograms added up, a gauge the
    value set last (by any worker)."""
    out: dict[tuple[str, ...], Any] = {}
    if kind == "histogram":
        for part in parts:
            for key, h in part.get("h", []):
                k = tuple(key)
                old = out.get(k)
                out[k] = list(h) if old is None else [a + b for a, b in zip(old, h, strict=False)]
        return out
    newest: dict[tuple[str, ...], float] = {}
    for part in parts:
        for key, v, at in part.get("v", []):
            k = tuple(key)
            if kind == "counter":
                out[k] = out.get(k, 0) + v
            elif k not in newest or at > newest[k]:
                out[k], newest[k] = v, at
    return out


def parse_definition(kind: str, spec: str) -> Family:
    """Kamailio's ``"name=cnt01; label=method:handler; buckets=0.1:1:5"`` definitions."""
    attrs: dict[str, str] = {}
    for part in spec.split(";"):
        k, eq, v = part.partition("=")
        if eq:
            attrs[k.strip().lower()] = v.strip()
        elif part.strip():
            raise ValueError(f"bad {kind} definition {spec!r}")
    name = attrs.get("name", "")
    if not name or metric_name(name) != name:
        raise ValueError(f"bad metric name in {spec!r}")
    labels = tuple(x.strip() for x in attrs.get("label", "").split(":") if x.strip())
    if len(labels) > 3:
        raise ValueError(f"at most 3 labels in {spec!r}")
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    if kind == "histogram" and attrs.get("buckets"):
        buckets = tuple(sorted(float(x) for x in attrs["buckets"].split(":") if x.strip()))
    return Family(kind, name, labels, buckets)
