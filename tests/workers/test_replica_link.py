"""The replication sockets (ksr/core/replica_link.py) of three workers in one trio run: a write
made by one worker is in a sibling's copy once that sibling's ``drain`` ran, with no task
switch in between (a worker drains before each batch: read-your-writes), whether or not
anything was written since its last look."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from ksr.core.replica_link import COALESCE, ReplicaLink
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


@pytest.mark.parametrize("workers", [2, 3])
async def test_an_idle_worker_applies_writes_once_each_without_a_batch(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, workers: int
) -> None:
    """A worker that handles no messages (no drain) applies its siblings' writes itself, a
    moment later: while writes keep coming (its timer), after a quiet spell (the first write
    wakes it again), and mixed with drains, every write exactly once (increments tell); a
    sibling that goes away closes its connection here."""
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
            await link.restore()
        for t in tables:
            t.add("k", 0)
        while any(len(link.conns) < workers - 1 for link in links):
            await trio.sleep(0.001)
        total = 0
        for n in range(12):  # a write every third of a period: the readers' timers
            tables[n % workers].add("k", 1)
            total += 1
            await trio.sleep(COALESCE / 3)
        await trio.sleep(COALESCE * 3)
        assert [t.values["k"] for t in tables] == [total] * workers
        await trio.sleep(COALESCE * 5)  # quiet: the readers wait for the next write
        for n in range(10):  # drains in between take some of them first
            tables[-1].add("k", 2)
            total += 2
            if n % 3 == 0:
                links[0].drain()
                assert tables[0].values["k"] == total
            await trio.sleep(COALESCE / 4)
        await trio.sleep(COALESCE * 3)
        assert [t.values["k"] for t in tables] == [total] * workers
        assert all(link.r.errors == 0 for link in links)
        links[-1].out[0].close()  # worker 0 loses its connection from the last worker
        await trio.sleep(COALESCE * 3)
        assert len(links[0].conns) == workers - 2
        nursery.cancel_scope.cancel()
