"""xhttp_prom: Prometheus metrics over HTTP (Kamailio's module name and functions).

``KSR.xhttp_prom.dispatch()`` inside ``xhttp:request`` answers with every statistic of the
whole server, whichever worker process took the connection (ksr/core/stats_view.py): ``group:name``
becomes ``<prefix><group>_<name>`` (prefix ``ksr_`` by default, counters ending in ``_total``),
the latency histograms, and the metrics the script keeps with ``counter_inc_l0``,
``gauge_set_l1``, ``histogram_observe_l2``…
"""

from __future__ import annotations

import time
from typing import Any

import trio
from pydantic import field_validator

from ksr.core.config import ConfigError
from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.stats_view import stats_view
from ksr.kemi.registry import kemi
from ksr.modules.xhttp.api import XhttpApi

from .exposition import CONTENT_TYPE, Options, render
from .metrics import Family, parse_definition


def _as_list(v: str | list[str]) -> list[str]:
    return [v] if isinstance(v, str) and v else ([] if isinstance(v, str) else list(v))


class XhttpPromParams(ModParams):
    xhttp_prom_beginning: str = "ksr_"  # Kamailio's default is "kamailio_"
    xhttp_prom_stats: str = "all"  # "all", "" (none), or "group:" / "group:name" items split by ";"
    xhttp_prom_path: str = "/metrics"  # what check_uri() matches
    xhttp_prom_timeout: int = (
        60  # minutes a user metric label set lives without updates (0 = forever)
    )
    xhttp_prom_uptime_stat: int = 1  # export <prefix>uptime_seconds
    # 1: Kamailio's exact names (no _total on counters, <prefix>uptime), for old dashboards
    xhttp_prom_kamailio_names: int = 0
    xhttp_prom_buf_size: int = 0  # accepted for Kamailio configs
    xhttp_prom_pkg_stats: int = 0  # accepted for Kamailio configs
    xhttp_prom_counter: list[str] = []
    xhttp_prom_gauge: list[str] = []
    xhttp_prom_histogram: list[str] = []

    @field_validator(
        "xhttp_prom_counter", "xhttp_prom_gauge", "xhttp_prom_histogram", mode="before"
    )
    @classmethod
    def _one_or_many(cls, v: str | list[str]) -> list[str]:
        return _as_list(v)


class XhttpProm(Module):
    name = "xhttp_prom"
    Params = XhttpPromParams

    def init(self) -> None:
        self.xhttp = self.optional("xhttp", XhttpApi)
        self.families: dict[str, Family] = {}
        p = self.params
        for kind, specs in (
            ("counter", p.xhttp_prom_counter),
            ("gauge", p.xhttp_prom_gauge),
            ("histogram", p.xhttp_prom_histogram),
        ):
            for spec in specs:
                try:
                    fam = parse_definition(kind, spec)
                except ValueError as err:
                    raise ConfigError(
                        f"[modparam.xhttp_prom]: {err}", self.server.config.source
                    ) from None
                if fam.name in self.families:
                    raise ConfigError(
                        f"[modparam.xhttp_prom]: metric {fam.name} defined twice",
                        self.server.config.source,
                    )
                self.families[fam.name] = fam

        # each worker's script metrics go into the whole server's view (merged on scrape)
        stats_view(self.server).section("xhttp_prom", self._section, _parts)

    async def start(self, nursery: trio.Nursery) -> None:
        stats_view(self.server).start_push()

    def _section(self) -> dict[str, Any]:
        timeout = self.params.xhttp_prom_timeout
        now = time.monotonic()
        out: dict[str, Any] = {}
        for fam in self.families.values():
            if timeout > 0:
                fam.expire(now - timeout * 60)
            out[fam.name] = fam.to_json()
        return out

    # -- exposition ----------------------------------------------------------------------------
    def _stat_specs(self) -> list[str]:
        return [s.strip() for s in self.params.xhttp_prom_stats.split(";") if s.strip()]

    def _cluster(self) -> list[dict[str, Any]] | None:
        """The cluster's nodes (docs/cluster.md), None without a cluster."""
        nodes = self.server.cluster.nodes
        if not self.server.cluster.enabled or not nodes.watching:
            return None
        return [n.as_dict() for n in nodes.nodes()]

    def render(self) -> bytes:
        p = self.params
        opts = Options(
            prefix=p.xhttp_prom_beginning,
            specs=self._stat_specs(),
            kamailio_names=bool(p.xhttp_prom_kamailio_names),
            uptime=time.time() - self.server.started if p.xhttp_prom_uptime_stat else None,
            cluster=self._cluster(),
        )
        return render(stats_view(self.server).current(), self.families, opts)

    @kemi()
    def dispatch(self, ctx: MsgContext) -> int:
        """Answer the current HTTP request (xhttp:request) with the metrics. 1 ok, -1 error."""
        ex = self.xhttp.exchange(ctx) if self.xhttp is not None else None
        if ex is None:
            return -1
        if not stats_view(self.server).ready:
            # a restarted worker, for a few ms: a failed scrape rather than counters that drop
            ok = ex.reply(503, "Service Unavailable", [("Retry-After", "1")], b"starting\n")
            return 1 if ok else -1
        return 1 if ex.reply(200, "OK", [("Content-Type", CONTENT_TYPE)], self.render()) else -1

    @kemi()
    def check_uri(self, ctx: MsgContext) -> int:
        """1 if the HTTP request's URL is the metrics path (xhttp_prom_path), -1 otherwise."""
        ex = self.xhttp.exchange(ctx) if self.xhttp is not None else None
        if ex is None:
            return -1
        path = ex.target.split("?", 1)[0]
        return 1 if path == self.params.xhttp_prom_path else -1

    # -- user metrics ---------------------------------------------------------------------------
    def _family(self, name: str, kind: str, nlabels: int) -> Family | None:
        fam = self.families.get(name)
        if fam is None or fam.kind != kind or len(fam.labels) != nlabels:
            return None
        return fam

    def _counter_inc(self, name: str, n: int, *labels: str) -> int:
        fam = self._family(name, "counter", len(labels))
        if fam is None or n < 0:
            return -1
        fam.add(labels, n, time.monotonic())
        return 1

    def _reset(self, kind: str, name: str, *labels: str) -> int:
        fam = self._family(name, kind, len(labels))
        if fam is None:
            return -1
        fam.reset(labels)
        return 1

    def _gauge_set(self, name: str, value: str, *labels: str) -> int:
        return self._record("gauge", name, value, labels)

    def _observe(self, name: str, value: str, *labels: str) -> int:
        return self._record("histogram", name, value, labels)

    def _record(self, kind: str, name: str, value: str, labels: tuple[str, ...]) -> int:
        """Set a gauge or observe a histogram value; value is a number written as a string."""
        fam = self._family(name, kind, len(labels))
        try:
            v = float(value)
        except ValueError:
            return -1
        if fam is None:
            return -1
        record = fam.set if kind == "gauge" else fam.observe
        record(labels, v, time.monotonic())
        return 1

    @kemi()
    def counter_inc_l0(self, ctx: MsgContext, name: str, number: int) -> int:
        """counter_inc_l0(name, number): add to a counter without labels."""
        return self._counter_inc(name, number)

    @kemi()
    def counter_inc_l1(self, ctx: MsgContext, name: str, number: int, l1: str) -> int:
        """counter_inc_l1(name, number, l1): add to a counter with one label value."""
        return self._counter_inc(name, number, l1)

    @kemi()
    def counter_inc_l2(self, ctx: MsgContext, name: str, number: int, l1: str, l2: str) -> int:
        """counter_inc_l2(name, number, l1, l2)."""
        return self._counter_inc(name, number, l1, l2)

    @kemi()
    def counter_inc_l3(
        self, ctx: MsgContext, name: str, number: int, l1: str, l2: str, l3: str
    ) -> int:
        """counter_inc_l3(name, number, l1, l2, l3)."""
        return self._counter_inc(name, number, l1, l2, l3)

    @kemi()
    def counter_reset_l0(self, ctx: MsgContext, name: str) -> int:
        """counter_reset_l0(name): set a counter back to 0."""
        return self._reset("counter", name)

    @kemi()
    def counter_reset_l1(self, ctx: MsgContext, name: str, l1: str) -> int:
        """counter_reset_l1(name, l1)."""
        return self._reset("counter", name, l1)

    @kemi()
    def counter_reset_l2(self, ctx: MsgContext, name: str, l1: str, l2: str) -> int:
        """counter_reset_l2(name, l1, l2)."""
        return self._reset("counter", name, l1, l2)

    @kemi()
    def counter_reset_l3(self, ctx: MsgContext, name: str, l1: str, l2: str, l3: str) -> int:
        """counter_reset_l3(name, l1, l2, l3)."""
        return self._reset("counter", name, l1, l2, l3)

    @kemi()
    def gauge_set_l0(self, ctx: MsgContext, name: str, value: str) -> int:
        """gauge_set_l0(name, value): value is a number written as a string ("2.5")."""
        return self._gauge_set(name, value)

    @kemi()
    def gauge_set_l1(self, ctx: MsgContext, name: str, value: str, l1: str) -> int:
        """gauge_set_l1(name, value, l1)."""
        return self._gauge_set(name, value, l1)

    @kemi()
    def gauge_set_l2(self, ctx: MsgContext, name: str, value: str, l1: str, l2: str) -> int:
        """gauge_set_l2(name, value, l1, l2)."""
        return self._gauge_set(name, value, l1, l2)

    @kemi()
    def gauge_set_l3(
        self, ctx: MsgContext, name: str, value: str, l1: str, l2: str, l3: str
    ) -> int:
        """gauge_set_l3(name, value, l1, l2, l3)."""
        return self._gauge_set(name, value, l1, l2, l3)

    @kemi()
    def gauge_reset_l0(self, ctx: MsgContext, name: str) -> int:
        """gauge_reset_l0(name): set a gauge to 0."""
        return self._reset("gauge", name)

    @kemi()
    def gauge_reset_l1(self, ctx: MsgContext, name: str, l1: str) -> int:
        """gauge_reset_l1(name, l1)."""
        return self._reset("gauge", name, l1)

    @kemi()
    def gauge_reset_l2(self, ctx: MsgContext, name: str, l1: str, l2: str) -> int:
        """gauge_reset_l2(name, l1, l2)."""
        return self._reset("gauge", name, l1, l2)

    @kemi()
    def gauge_reset_l3(self, ctx: MsgContext, name: str, l1: str, l2: str, l3: str) -> int:
        """gauge_reset_l3(name, l1, l2, l3)."""
        return self._reset("gauge", name, l1, l2, l3)

    @kemi()
    def histogram_observe_l0(self, ctx: MsgContext, name: str, value: str) -> int:
        """histogram_observe_l0(name, value): count one observation (a number as a string)."""
        return self._observe(name, value)

    @kemi()
    def histogram_observe_l1(self, ctx: MsgContext, name: str, value: str, l1: str) -> int:
        """histogram_observe_l1(name, value, l1)."""
        return self._observe(name, value, l1)

    @kemi()
    def histogram_observe_l2(self, ctx: MsgContext, name: str, value: str, l1: str, l2: str) -> int:
        """histogram_observe_l2(name, value, l1, l2)."""
        return self._observe(name, value, l1, l2)

    @kemi()
    def histogram_observe_l3(
        self, ctx: MsgContext, name: str, value: str, l1: str, l2: str, l3: str
    ) -> int:
        """histogram_observe_l3(name, value, l1, l2, l3)."""
        return self._observe(name, value, l1, l2, l3)


def _parts(parts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The workers' parts of each script metric, merged when written (exposition.py)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        for name, data in part.items():
            out.setdefault(name, []).append(data)
    return out


MODULE = XhttpProm
