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

A worker that dies and is restarted would count from zero again, and the server's counters
would drop by its part: Prometheus would take that for a reset of the whole counter and see a
spike. So the restarted worker takes over its predecessor's counters: it asks the other
workers for the last snapshot they kept of its index (``stats.snapshot_of``) and adds it to its
own counters and histograms. Until it has done so, the others add that last snapshot to the
new worker's figures themselves. (This needs the pushes, i.e. xhttp_prom or status loaded;
only what the dead worker counted in its last second is lost.)
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
    from .core_api import Core

log = logging.getLogger("ksr.stats")

TOPIC = "stats"  # hand-off notice topic of pushed snapshots
SNAPSHOT_RPC = "stats.snapshot"
SNAPSHOT_OF_RPC = "stats.snapshot_of"
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
    def __init__(self, server: Core) -> None:
        self.server = server
        self.stats = server.stats
        self.others: dict[int, dict[str, Any]] = {}  # latest pushed snapshot of each worker
        self.sections: dict[str, tuple[Collect, Merge]] = {}
        self.pushing = False
        # a restarted worker: its predecessor's counters, kept until the new one took them over
        self.floors: dict[int, dict[str, Any]] = {}
        self.inherited = True  # False while this (restarted) worker takes over its counters
        self.generation = 0  # +1 when counters were taken over (they jumped up at once)
        self._sent = b""
        self._sent_at = 0.0
        self._too_big = False

    # -- this worker -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """False while this restarted worker has not taken over its predecessor's counters
        (its answers would show less than earlier ones)."""
        return self.inherited

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
            "inh": self.inherited,
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
        return self.merge([local, *self.others.values(), *self._floors(self.others)])

    def _floors(self, snaps: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        """The kept counters of restarted workers that have not taken them over yet."""
        return [
            self.floors[w]
            for w, snap in snaps.items()
            if w in self.floors and not snap.get("inh", True)
        ]

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
        fresh = {int(x["w"]): x for x in got}
        return self.merge([local, *got, *self._floors(fresh)])

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
        self.inherited = False
        handoff.notes[TOPIC] = self._on_note
        self.server.timers.every(PUSH_INTERVAL, self.push, name="stats push", first=0)
        if self.server.nursery is not None:
            self.server.nursery.start_soon(self._inherit)
        else:
            self.inherited = True

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
        old = self.others.get(w)
        if old is not None and old["pid"] != snap["pid"]:
            # worker w was restarted: keep what its predecessor counted until it took that over
            self.floors[w] = self.carried(w)
        if old is None or old["pid"] != snap["pid"]:
            self._send(self.snapshot(full=False))  # a new process: let it know our figures now
        if snap.get("inh", True):
            self.floors.pop(w, None)
        self.others[w] = snap

    # -- restarted workers ---------------------------------------------------------------------
    def carried(self, w: int) -> dict[str, Any]:
        """Everything worker w counted as far as this worker knows (its last snapshot and what
        it had not taken over yet): counters and histograms only."""
        parts = [self.others[w]] if w in self.others else []
        if parts and not parts[0].get("inh", True) and w in self.floors:
            parts.append(self.floors[w])
        return _counts_only(parts, w)

    def snapshot_of(self, w: int, pid: int) -> dict[str, Any] | None:
        """For a restarted worker w (now ``pid``): what its predecessor counted, if known."""
        snap = self.others.get(w)
        if snap is None:
            return None
        if snap["pid"] == pid:  # the new process's first snapshot came first: the kept counts
            return self.floors.get(w)
        return self.carried(w)

    async def _inherit(self) -> None:
        """Take over the counters of this worker index's predecessor (see the module doc)."""
        handoff = self.server.handoff
        try:
            if handoff is None:
                return
            me, pid = handoff.index, os.getpid()
            found: list[dict[str, Any]] = []

            async def ask(i: int) -> None:
                reply = await handoff.call(i, SNAPSHOT_OF_RPC, [me, pid])
                if reply is not None and isinstance(reply.get("result"), dict):
                    found.append(reply["result"])
                # and its own figures, so that this worker's first answers include them
                reply = await handoff.call(i, SNAPSHOT_RPC, [])
                snap = reply.get("result") if reply is not None else None
                if isinstance(snap, dict) and i not in self.others:
                    self.others[i] = snap

            async with trio.open_nursery() as nursery:
                for i in range(handoff.count):
                    if i != me:
                        nursery.start_soon(ask, i)
            if found:
                self._take_over(_highest(found))
        except Exception:  # statistics must never take a worker down
            log.exception("statistics: taking over the previous process's counters failed")
        finally:
            self.inherited = True
            if self.pushing:
                self._send(self.snapshot(full=False))

    def _take_over(self, carried: dict[str, Any]) -> None:
        st = self.stats
        for key, v in carried["c"].items():
            group, _, name = key.partition(":")
            st.counter(group, name).value += v
        for name, d in carried["h"].items():
            hist = st.histograms.get(name)
            if hist is None or list(hist.bounds) != list(d["bounds"]):
                continue
            for labels, counts, total in d["s"]:
                series = hist.child(*labels)
                series.counts = [a + b for a, b in zip(series.counts, counts, strict=False)]
                series.sum += total
        self.generation += 1
        log.info("statistics: took over the counters of this worker's previous process")


def _counts_only(parts: list[dict[str, Any]], w: int) -> dict[str, Any]:
    """Counters and histograms of snapshots added up, as a snapshot of worker w (no gauges)."""
    c: dict[str, int] = {}
    h: dict[str, Any] = {}
    for part in parts:
        for k, v in part["c"].items():
            c[k] = c.get(k, 0) + v
        for name, d in part["h"].items():
            into = h.setdefault(name, {**d, "s": []})
            by_key = {tuple(x[0]): x for x in into["s"]}
            for key, counts, total in d["s"]:
                old = by_key.get(tuple(key))
                if old is None:
                    into["s"].append([list(key), list(counts), total])
                    by_key[tuple(key)] = into["s"][-1]
                else:
                    old[1] = [a + b for a, b in zip(old[1], counts, strict=False)]
                    old[2] += total
    return {"w": w, "pid": 0, "inh": True, "t": time.time(), "c": c, "g": {}, "o": {}, "h": h}


def _highest(found: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest of several workers' accounts of the same counters (one may have missed the
    last push)."""
    best = found[0]
    for f in found[1:]:
        if sum(f["c"].values()) > sum(best["c"].values()):
            best = f
    return best


def stats_view(server: Core) -> StatsView:
    """The server's view (one per worker process)."""
    view = server.stats.view
    if not isinstance(view, StatsView):
        view = server.stats.view = StatsView(server)
    return view
