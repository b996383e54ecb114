"""The replication sockets (ksr/core/replica_link.py) of three workers in one trio run: a write
made by one worker is in a sibling's copy once that sibling's ``drain`` ran, with no task
switch in between (a worker drains before each batch: read-your-writes), whether or not
anything was written since its last look."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from ksr.core.replica_link import ReplicaLink
from ksr.core.replication import Replicator
from ksr.core.stats import Stats
from tests.workers.test_replication import Counter


async def test_drain_applies_every_write_made_before_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    links: list[ReplicaLink] = []
    tables: list[Counter] = []
    async with trio.open_nursery() as nursery:
        for i in range(3):
            r, t = Replicator(), Counter()
            r.register("counter", t)
            link = ReplicaLink(r, i, 3, str(tmp_path), Stats())
            await nursery.start(link.serve)
            links.append(link)
            tables.append(t)
        for link in links:
            await link.restore()  # nobody has a state yet: all start empty
        tables[0].add("k", 0)  # each worker connects to its siblings on its first write
        tables[1].add("k", 0)
        tables[2].add("k", 0)
        while any(len(link.conns) < 2 for link in links):
            await trio.sleep(0.001)
        for link in links:
            link.drain()
        for n in range(1, 7):
            tables[n % 3].add("k", n)
            for link in links:
                link.drain()
            assert [t.values["k"] for t in tables] == [sum(range(n + 1))] * 3
        tables[0].put("p", 7)
        links[2].drain()
        links[2].drain()  # nothing new since
        assert tables[2].values["p"] == 7
        nursery.cancel_scope.cancel()
