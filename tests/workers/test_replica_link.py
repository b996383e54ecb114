"""The replication sockets (ksr/core/replica_link.py) of three workers in one trio run: a write
made by one worker is in a sibling's copy once that sibling's ``drain`` ran, with no task
switch in between (a worker drains before each batch: read-your-writes), whether or not
anything was written since its last look."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from ksr.core.replica_link import ReplicaLink
from ksr.core.replication import Replicator
from ksr.core.stats import Stats
from tests.workers.test_replication import Counter


@pytest.mark.parametrize("workers", [2, 3])  # 2: one sibling, read without a poll()
async def test_drain_applies_every_write_made_before_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, workers: int
) -> None:
    links: list[ReplicaLink] = []
    tables: list[Counter] = []
    async with trio.open_nursery() as nursery:
        for i in range(workers):
            r, t = Replicator(), Counter()
            r.register("counter", t)
            link = ReplicaLink(r, i, workers, str(tmp_path), Stats())
            await nursery.start(link.serve)
            links.append(link)
            tables.append(t)
        for link in links:
            await link.restore()  # nobody has a state yet: all start empty
        for t in tables:
            t.add("k", 0)  # each worker connects to its siblings on its first write
        while any(len(link.conns) < workers - 1 for link in links):
            await trio.sleep(0.001)
        for link in links:
            link.drain()
        for n in range(1, 7):
            tables[n % workers].add("k", n)
            for link in links:
                link.drain()
            assert [t.values["k"] for t in tables] == [sum(range(n + 1))] * workers
        for _ in range(3):  # several writes between two looks: each one is applied
            tables[0].add("k", 10)
            tables[-1].add("k", 100)
        for link in links:
            link.drain()
        assert [t.values["k"] for t in tables] == [sum(range(7)) + 330] * workers
        tables[0].put("p", 7)
        links[-1].drain()
        links[-1].drain()  # nothing new since
        assert tables[-1].values["p"] == 7
        nursery.cancel_scope.cancel()
