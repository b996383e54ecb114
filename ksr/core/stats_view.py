"""One view of the statistics of the whole server, whichever worker process is asked.

With ``ksr run -n N`` every worker counts what it handles. A worker describes its figures in a
*snapshot* (plain JSON); the server's figures are the snapshots merged: counters and histograms
added up, gauges added up when each worker holds a part of the state (``SUM``: dialogs,
transactions) and taken once when every worker reads the same value (``ONE``: settings, a
shared table, the machine's memory).

Two ways to get the other workers' snapshots, both over the hand-off sockets
(ksr/core/handoff.py):

- **pull** (``gather``): ask every worker with the ``stats.snapshot`` RPC and wait. Exact; used
  by the ``stats.*`` RPC commands, which may wait.
- **push** (``current``): every worker sends its snapshot to the others once a second (when it
  changed) and whenever it answers a scrape; the answer is this worker's live figures plus the
  latest snapshot of each other worker. Used where the answer cannot wait: an HTTP request
  answered by the routing script (``/metrics``, the status page). A worker sends its snapshot
  *before* it answers, so a later scrape answered by another worker never shows less than an
  earlier one: counters never go backwards. Figures of another worker are at most about a
  second old.

A restarted worker starts counting from zero again, as a restarted server does; Prometheus'
``rate()`` treats that as a counter reset.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from .stats import ONE, SUM, Stats, select

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("ksr.stats")

TOPIC = "stats"  # hand-off notice topic of pushed snapshots
SNAPSHOT_RPC = "stats.snapshot"
PUSH_INTERVAL = 1.0  # seconds between pushes of a changed snapshot
KEEPALIVE = 10.0  # an unchanged snapshot is sent again after this long
STALE = 30.0  # a worker silent this long: its gauges are left out (its counters stay)
MAX_NOTE = 200_000  # bytes of a compressed snapshot (the hand-off socket reads 256 KiB)

Collect = Callable[[], Any]
Merge = Callable[[list[Any]], Any]


@dataclass
class HistogramView:
    name: str
    doc: str
    labels: list[str]
    bounds: list[float]
    # label values -> (counts per bucket, not cumulative, +Inf last; sum)
    series: dict[tuple[str, ...], tuple[list[int], float]] = field(default_factory=dict)


@dataclass
class ServerStats:
    """The statistics of the whole server (or of one worker without hand-off)."""

    stats: Stats  # this worker's registry: descriptions
    counters: dict[str, int]
    gauges: dict[str, int]
    histograms: dict[str, HistogramView]
    sections: dict[str, Any]
    workers: int

    def groups(self) -> list[str]:
        return sorted({k.partition(":")[0] for k in (*self.counters, *self.gauges)})

    def items(self, group: str) -> list[tuple[str, int]]:
        pre = group + ":"
        out = [(k[len(pre) :], v) for k, v in self.counters.items() if k.startswith(pre)]
        out += [(k[len(pre) :], v) for k, v in self.gauges.items() if k.startswith(pre)]
        return sorted(out)

    def value(self, group: str, name: str) -> int | None:
        key = f"{group}:{name}"
        v = self.counters.get(key)
        return v if v is not None else self.gauges.get(key)

    def select(self, spec: str) -> list[tuple[str, str, int]]:
        return select(spec, self.groups(), self.items, self.value)

    def kind(self, group: str, name: str) -> str:
        return "counter" if f"{group}:{name}" in self.counters else "gauge"

    def doc(self, group: str, name: str) -> str:
        return self.stats.doc(group, name)


class StatsView:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.stats = server.stats
        self.others: dict[int, dict[str, Any]] = {}  # latest pushed snapshot of each worker
        self.sections: dict[str, tuple[Collect, Merge]] = {}
        self.pushing = False
        self._sent = b""
        self._sent_at = 0.0
        self._too_big = False

    # -- this worker -------------------------------------------------------------------------
    def section(self, name: str, collect: Collect, merge: Merge) -> None:
        """A module's own part of the snapshot (JSON data) and how the parts of all workers
        combine (``merge`` gets this worker's part first)."""
        self.sections[name] = (collect, merge)

    def snapshot(self, full: bool = True) -> dict[str, Any]:
        """This worker's figures as JSON data. ``full=False`` (pushes) leaves out the ONE
        gauges: the worker that answers reads those itself, and some cost a query."""
        st = self.stats
        c: dict[str, int] = {}
        g: dict[str, int] = {}
        o: dict[str, int] = {}
        for group in st.groups():
            c.update((f"{group}:{n}", v) for n, v in st.counter_items(group))
            g.update((f"{group}:{n}", v) for n, v in st.gauge_items(group, SUM))
            if full:
                o.update((f"{group}:{n}", v) for n, v in st.gauge_items(group, ONE))
        h = {
            name: {
                "doc": hist.doc,
                "labels": list(hist.labels),
                "bounds": list(hist.bounds),
                "s": [[list(k), list(s.counts), s.sum] for k, s in hist.series.items()],
            }
            for name, hist in st.histograms.items()
        }
        x: dict[str, Any] = {}
        for name, (collect, _) in self.sections.items():
            try:
                x[name] = collect()
            except Exception:
                log.exception("statistics section %s failed", name)
        handoff = self.server.handoff
        return {
            "w": handoff.index if handoff is not None else 0,
            "pid": os.getpid(),
            "t": time.time(),
            "c": c,
            "g": g,
            "o": o,
            "h": h,
            "x": x,
        }

    # -- the whole server ----------------------------------------------------------------------
    def current(self) -> ServerStats:
        """Now, without waiting: live figures of this worker, pushed ones of the others. This
        worker's snapshot goes to the others first (see the module docstring)."""
        local = self.snapshot()
        if self.pushing:
            self._send(local)
        return self.merge([local, *self.others.values()])

    async def gather(self) -> ServerStats:
        """Ask every other worker (pull) and merge; a worker that does not answer is left out."""
        handoff = self.server.handoff
        local = self.snapshot()
        if handoff is None or handoff.count < 2:
            return self.merge([local])
        others = [i for i in range(handoff.count) if i != handoff.index]
        got: list[dict[str, Any]] = []

        async def ask(i: int) -> None:
            reply = await handoff.call(i, SNAPSHOT_RPC, [])
            if reply is not None and isinstance(reply.get("result"), dict):
                got.append(reply["result"])

        async with trio.open_nursery() as nursery:
            for i in others:
                nursery.start_soon(ask, i)
        return self.merge([local, *got])

    def merge(self, snaps: list[dict[str, Any]]) -> ServerStats:
        local = snaps[0]
        now = time.time()
        counters: dict[str, int] = dict(local["c"])
        gauges: dict[str, int] = dict(local["g"])
        hists = {
            name: HistogramView(name, d["doc"], list(d["labels"]), list(d["bounds"]))
            for name, d in local["h"].items()
        }
        for s in snaps:
            if s is not local:
                for k, v in s["c"].items():
                    counters[k] = counters.get(k, 0) + v
                if now - s["t"] <= STALE:
                    for k, v in s["g"].items():
                        gauges[k] = gauges.get(k, 0) + v
            for name, d in s["h"].items():
                hv = hists.get(name)
                if hv is None:
                    hv = hists[name] = HistogramView(
                        name, d["doc"], list(d["labels"]), list(d["bounds"])
                    )
                if list(d["bounds"]) != hv.bounds:
                    continue  # another configuration: cannot be added up
                for key, counts, total in d["s"]:
                    k = tuple(key)
                    old = hv.series.get(k)
                    if old is None:
                        hv.series[k] = (list(counts), total)
                    else:
                        hv.series[k] = (
                            [a + b for a, b in zip(old[0], counts, strict=False)],
                            old[1] + total,
                        )
        gauges.update(local["o"])
        sections: dict[str, Any] = {}
        for name, (_, merge) in self.sections.items():
            parts = [s["x"][name] for s in snaps if name in s.get("x", {})]
            try:
                sections[name] = merge(parts)
            except Exception:
                log.exception("statistics section %s: merge failed", name)
        return ServerStats(self.stats, counters, gauges, hists, sections, len(snaps))

    # -- push ------------------------------------------------------------------------------------
    def start_push(self) -> None:
        """Send this worker's snapshot to the others and keep theirs (idempotent; nothing to
        do with one worker). Called from the start() of the modules that answer scrapes."""
        handoff = self.server.handoff
        if self.pushing or handoff is None or handoff.count < 2:
            return
        self.pushing = True
        handoff.notes[TOPIC] = self._on_note
        self.server.timers.every(PUSH_INTERVAL, self.push, name="stats push", first=0)

    def push(self) -> None:
        self._send(self.snapshot(full=False), periodic=True)

    def _send(self, snap: dict[str, Any], periodic: bool = False) -> None:
        handoff = self.server.handoff
        if handoff is None:
            return
        body = {k: v for k, v in snap.items() if k != "t"}
        key = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        now = time.monotonic()
        if periodic and key == self._sent and now - self._sent_at < KEEPALIVE:
            return  # unchanged
        payload = zlib.compress(json.dumps(snap, separators=(",", ":")).encode(), 1)
        if len(payload) > MAX_NOTE:
            if not self._too_big:
                self._too_big = True
                log.warning(
                    "statistics snapshot is %d bytes compressed; sent without module sections",
                    len(payload),
                )
            snap = {**snap, "x": {}}
            payload = zlib.compress(json.dumps(snap, separators=(",", ":")).encode(), 1)
        self._sent, self._sent_at = key, now
        handoff.notify(TOPIC, payload)

    def _on_note(self, payload: bytes) -> None:
        try:
            snap = json.loads(zlib.decompress(payload))
            w = int(snap["w"])
        except (ValueError, KeyError, TypeError, zlib.error):
            log.warning("bad statistics snapshot from another worker")
            return
        self.others[w] = snap


def stats_view(server: Server) -> StatsView:
    """The server's view (one per worker process)."""
    view = server.stats.view
    if not isinstance(view, StatsView):
        view = server.stats.view = StatsView(server)
    return view
