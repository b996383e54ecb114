"""Dialog profile sizes over the whole cluster (dialog ``enable_dmq = 1``; docs/cluster.md).

Inside a node the sizes are a table its workers share (table.Profiles). Between nodes each node
publishes its totals, and reads the others':

* every PERIOD seconds the node's first worker writes ``{"n": <counter>, "p": {profile: {value:
  count}}}`` under its server_id in the Redis hash ``<prefix>ksr:cluster:dlg:profiles``;
* every worker of every node reads the hash as often and keeps the other nodes' totals;
  ``get_profile_size`` adds them to the node's own. A node whose counter has not moved for
  STALE seconds (on the reader's clock: node clocks may differ) is left out: it died, and
  the survivor that takes its dialogs counts them.

So a size counts a call made on another node within about a second. A malformed entry is
logged (rate-limited) and counted in ``dialog:cluster_bad_data``; a Redis that does not answer
is logged and counted, and the other nodes' totals age out after STALE seconds.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

import trio

from ksr.core.ratelog import RateLimitedLog

from .profiles import Profiles

if TYPE_CHECKING:
    from ksr.core.core_api import Core

log = logging.getLogger("ksr.dialog")

PERIOD = 1.0
STALE = 5.0


def parse_totals(text: str) -> tuple[int, dict[str, Counter[str]]]:
    """One node's entry; ValueError when malformed."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ValueError(f"not JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("n"), int):
        raise ValueError("no counter")
    prof = doc.get("p")
    if not isinstance(prof, dict):
        raise ValueError("no profiles")
    out: dict[str, Counter[str]] = {}
    for name, values in prof.items():
        if not isinstance(values, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values.values()
        ):
            raise ValueError(f"profile {name!r}: counts must be whole numbers")
        out[str(name)] = Counter({str(k): v for k, v in values.items()})
    return doc["n"], out


class ClusterProfiles:
    def __init__(self, server: Core, profiles: Profiles) -> None:
        self.server = server
        self.profiles = profiles
        self.node = server.config.core.server_id
        self.key = server.cluster.key("dlg:profiles")
        self.counter = 0
        self.seen: dict[int, tuple[int, float]] = {}  # node -> (its counter, when it moved)
        self.bad = RateLimitedLog(log)
        self._r: Any = None
        st = server.stats
        self.c_bad = st.counter(
            "dialog", "cluster_bad_data", doc="malformed profile totals read from the cluster"
        )
        self.c_errors = st.counter(
            "dialog", "cluster_redis_errors", doc="failed profile exchanges with the cluster"
        )

    async def run(self) -> None:
        from ksr.db.redis_connect import connect

        self._r = connect(self.server.config.cluster.redis_url)
        errors = self.server.cluster.redis_errors()
        while True:
            try:
                raw = await trio.to_thread.run_sync(self._exchange, self._totals())
            except errors as err:
                self.c_errors.inc()
                self.bad.warning("dialog: profile sizes from the cluster's redis: %s", err)
            else:
                self.take(raw)
            self.age()
            await trio.sleep(PERIOD)

    def _totals(self) -> str | None:
        """This node's entry, written by its first worker only."""
        if not self.server.shared.leader:
            return None
        self.counter += 1
        snap = self.profiles.replica_snapshot()
        total: dict[str, Counter[str]] = {}
        for by in snap.values():
            for name, values in by.items():
                total.setdefault(name, Counter()).update(values)
        p = {n: {v: k for v, k in c.items() if k > 0} for n, c in total.items()}
        return json.dumps({"n": self.counter, "p": p}, separators=(",", ":"))

    def _exchange(self, mine: str | None) -> dict[str, str]:
        pipe = self._r.pipeline(transaction=False)
        if mine is not None:
            pipe.hset(self.key, str(self.node), mine)
        pipe.hgetall(self.key)
        return dict(pipe.execute()[-1])

    def take(self, raw: dict[str, str]) -> None:
        now = trio.current_time()
        for field, text in raw.items():
            try:
                node = int(field)
                if node == self.node:
                    continue
                n, totals = parse_totals(text)
            except ValueError as err:
                self.c_bad.inc()
                self.bad.warning("dialog: bad profile totals of node %r: %s", field, err)
                continue
            last = self.seen.get(node)
            if last is None or last[0] != n:
                self.seen[node] = (n, now)
                self.profiles.remote[node] = totals

    def age(self) -> None:
        now = trio.current_time()
        for node, (_, at) in list(self.seen.items()):
            if now - at > STALE and node in self.profiles.remote:
                del self.profiles.remote[node]
                log.info("dialog: node %d's profile sizes left out (no news)", node)
