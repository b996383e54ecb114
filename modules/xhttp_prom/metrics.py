"""User-defined Prometheus metrics of xhttp_prom and the text exposition format (0.0.4)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_:]")


def metric_name(text: str) -> str:
    """A valid Prometheus metric name (other characters become ``_``)."""
    name = _BAD_CHARS.sub("_", text)
    return "_" + name if name[:1].isdigit() else name


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


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

    def add(self, key: tuple[str, ...], n: float, now: float) -> None:
        self.values[key] = self.values.get(key, 0) + n
        self.touched[key] = now

    def set(self, key: tuple[str, ...], v: float, now: float) -> None:
        self.values[key] = v
        self.touched[key] = now

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
            del self.touched[key]

    def _labels(self, key: tuple[str, ...], extra: str = "") -> str:
        parts = [f'{n}="{_escape(v)}"' for n, v in zip(self.labels, key, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def render(self, prefix: str) -> list[str]:
        full = metric_name(prefix + self.name)
        out = [f"# TYPE {full} {self.kind}"]
        if self.kind != "histogram":
            out.extend(f"{full}{self._labels(k)} {_fmt(v)}" for k, v in sorted(self.values.items()))
            return out
        for key, h in sorted(self.hist.items()):
            for i, upper in enumerate(self.buckets):
                le = 'le="' + _fmt(upper) + '"'
                out.append(f"{full}_bucket{self._labels(key, le)} {_fmt(h[i])}")
            inf = 'le="+Inf"'
            out.append(f"{full}_bucket{self._labels(key, inf)} {_fmt(h[-1])}")
            out.append(f"{full}_sum{self._labels(key)} {_fmt(h[-2])}")
            out.append(f"{full}_count{self._labels(key)} {_fmt(h[-1])}")
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
