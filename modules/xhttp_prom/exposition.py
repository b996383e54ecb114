"""The text of ``/metrics``: the whole server's statistics, histograms and script metrics in
Prometheus' text format, written by ``prometheus_client``.

Names (docs/modules/xhttp_prom.md): ``group:name`` becomes ``<prefix><group>_<name>``; by default
counters end in ``_total`` as Prometheus wants. With ``xhttp_prom_kamailio_names = 1`` every name
is exactly Kamailio's (no ``_total``) and those counters are typed ``untyped``: the exposition
format has no counter without the suffix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from ksr.core.stats_view import HistogramView, ServerStats

from .metrics import Family, merge_json, metric_name

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Options:
    prefix: str
    specs: list[str]  # xhttp_prom_stats items
    kamailio_names: bool
    uptime: float | None  # seconds, None: not exported
    cluster: list[dict[str, Any]] | None = None  # the cluster's nodes (NodeInfo.as_dict())


def _bound(v: float) -> str:
    return str(int(v)) if v == int(v) else repr(v)


def _counter(name: str, doc: str, kamailio: bool) -> Metric:
    if kamailio:
        return Metric(name, doc, "unknown")
    return CounterMetricFamily(name, doc)


def _add(m: Metric, name: str, labels: dict[str, str], value: float) -> None:
    """A sample; counters of the Prometheus style get the ``_total`` sample name."""
    sample = name + "_total" if m.type == "counter" else name
    m.add_sample(sample, labels, value)


def _histogram(
    name: str, doc: str, labels: list[str], bounds: list[float], series: dict[Any, Any]
) -> HistogramMetricFamily:
    """series: label values -> (cumulative counts per bound then +Inf, sum)."""
    h = HistogramMetricFamily(name, doc, labels=labels)
    for key, (cum, total) in sorted(series.items()):
        buckets = [(_bound(b), c) for b, c in zip(bounds, cum, strict=False)]
        buckets.append(("+Inf", cum[-1]))
        h.add_metric(list(key), buckets, total)
    return h


def _core_histogram(prefix: str, hv: HistogramView) -> HistogramMetricFamily:
    series: dict[tuple[str, ...], tuple[list[int], float]] = {}
    for key, (counts, total) in hv.series.items():
        cum, run = [], 0
        for c in counts:
            run += c
            cum.append(run)
        series[key] = (cum, total)
    return _histogram(metric_name(prefix + hv.name), hv.doc, hv.labels, hv.bounds, series)


class _Collector:
    def __init__(self, view: ServerStats, families: dict[str, Family], opts: Options) -> None:
        self.view = view
        self.families = families
        self.opts = opts

    def collect(self) -> Iterator[Metric]:
        o, view = self.opts, self.view
        seen: set[tuple[str, str]] = set()
        for spec in o.specs:
            for group, name, value in view.select(spec):
                if (group, name) in seen:
                    continue
                seen.add((group, name))
                full = metric_name(f"{o.prefix}{group}_{name}")
                doc = view.doc(group, name) or f"statistic {group}:{name}"
                if view.kind(group, name) == "counter":
                    m = _counter(full, doc, o.kamailio_names)
                else:
                    m = GaugeMetricFamily(full, doc)
                _add(m, full, {}, value)
                yield m
        if o.uptime is not None:
            name = metric_name(o.prefix + ("uptime" if o.kamailio_names else "uptime_seconds"))
            yield GaugeMetricFamily(name, "seconds since the server started", value=o.uptime)
        if not o.kamailio_names:
            yield GaugeMetricFamily(
                metric_name(o.prefix + "stats_workers"),
                "worker processes whose figures this answer includes",
                value=view.workers,
            )
        for hv in view.histograms.values():
            if hv.series:
                yield _core_histogram(o.prefix, hv)
        if o.cluster is not None:
            yield from _cluster(o.prefix, o.cluster, o.kamailio_names)
        parts: dict[str, list[dict[str, Any]]] = view.sections.get("xhttp_prom") or {}
        for fam in self.families.values():
            yield self._user(fam, merge_json(fam.kind, parts.get(fam.name, [])))

    def _user(self, fam: Family, values: dict[tuple[str, ...], Any]) -> Metric:
        o = self.opts
        full = metric_name(o.prefix + fam.name)
        doc = f"script metric {fam.name}"
        labels = list(fam.labels)
        if fam.kind == "histogram":
            series = {k: (h[: len(fam.buckets)] + [h[-1]], h[-2]) for k, h in values.items()}
            return _histogram(full, doc, labels, list(fam.buckets), series)
        if fam.kind == "counter":
            if full.endswith("_total") and not o.kamailio_names:
                full = full[: -len("_total")]
            m = _counter(full, doc, o.kamailio_names)
        else:
            m = GaugeMetricFamily(full, doc)
        for key, v in sorted(values.items()):
            _add(m, full, dict(zip(labels, key, strict=True)), v)
        return m


# per node of the cluster: (metric, doc, figure published in heartbeats or None, counter)
_NODE_METRICS = (
    ("cluster_node_up", "1 when the node is alive (heartbeat fresh), else 0", None, False),
    (
        "cluster_node_heartbeat_age_seconds",
        "seconds since the node's last heartbeat (Redis's clock)",
        None,
        False,
    ),
    (
        "cluster_node_active_dialogs",
        "calls in progress on the node",
        "dialog:active_dialogs",
        False,
    ),
    ("cluster_node_early_dialogs", "dialogs ringing on the node", "dialog:early_dialogs", False),
    (
        "cluster_node_active_transactions",
        "transactions without a final reply on the node",
        "tmx:active_transactions",
        False,
    ),
    ("cluster_node_rcv_requests", "requests received by the node", "core:rcv_requests", True),
    ("cluster_node_rcv_replies", "replies received by the node", "core:rcv_replies", True),
)


def _cluster(prefix: str, nodes: list[dict[str, Any]], kamailio: bool) -> Iterator[Metric]:
    """Every node of the cluster as this node's last watch saw it, labelled by server_id."""
    for name, doc, figure, is_counter in _NODE_METRICS:
        full = metric_name(prefix + name)
        m = _counter(full, doc, kamailio) if is_counter else GaugeMetricFamily(full, doc)
        for n in nodes:
            labels = {"server_id": str(n["server_id"])}
            if figure is not None:
                if figure in n["stats"]:
                    _add(m, full, labels, n["stats"][figure])
            elif name == "cluster_node_up":
                _add(m, full, labels, 1 if n["state"] == "alive" else 0)
            else:
                _add(m, full, labels, n["age"])
        yield m


def render(view: ServerStats, families: dict[str, Family], opts: Options) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(view, families, opts))
    return generate_latest(registry)
