"""How long a write to a node-shared htable takes to reach another node (docs/cluster.md).

    python -m bench.cluster_htable [--writes 200] [--redis redis://127.0.0.1:6379/0]

Three in-process nodes share one Redis (a fresh key prefix, removed afterwards). Node 1 sets
an item in a ``dmqreplicate=1`` table; the time until node 3 holds it is measured, one write at a
time (latency, not throughput), then the CPU time per write on the writing node for a burst.
All three nodes run in one process and one trio loop, so the figures include the other nodes'
work: a lower bound for separate machines' latency is the Redis round trips, not this.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import trio

from tests import services
from tests.support import make_config, running_server, write_script


async def run(writes: int, redis_url: str) -> None:
    prefix = f"b{uuid.uuid4().hex[:8]}_"
    url = f"{redis_url}?prefix={prefix}"
    tmp = Path(tempfile.mkdtemp(prefix="ksr-bench-"))
    script = write_script(tmp, "function ksr_request_route() end")

    def cfg(sid: int):  # type: ignore[no-untyped-def]
        c = make_config(
            ["htable", "jsonrpcs"],
            {"htable": {"htable": ["ipban=>size=8;autoexpire=300;dmqreplicate=1;"]}},
            server_id=sid,
        )
        c.cluster.redis_url = url
        return c

    try:
        async with (
            running_server(cfg(1), script) as n1,
            running_server(cfg(2), script),
            running_server(cfg(3), script) as n3,
        ):
            t1 = n1.module("htable").table("ipban")
            t3 = n3.module("htable").table("ipban")
            lat: list[float] = []
            for i in range(writes):
                key = f"192.0.2.{i % 250}-{i}"
                t0 = time.perf_counter()
                t1.set(key, 1)
                while not t3.has(key):
                    await trio.sleep(0)
                lat.append((time.perf_counter() - t0) * 1000)
            lat.sort()
            print(
                f"node 1 -> node 3, {writes} writes one at a time: median "
                f"{statistics.median(lat):.2f} ms, p90 {lat[int(len(lat) * 0.9)]:.2f} ms, "
                f"max {lat[-1]:.2f} ms"
            )
            c0 = time.process_time()
            for i in range(writes):
                t1.set(f"burst-{i}", i)
            c1 = time.process_time()
            while not t3.has(f"burst-{writes - 1}"):
                await trio.sleep(0.001)
            print(
                f"writing node: {(c1 - c0) / writes * 1e6:.1f} CPU-us per write (queued); "
                f"whole burst delivered in {(time.process_time() - c0) * 1000:.0f} ms CPU "
                "(all nodes, this process)"
            )
    finally:
        services.drop_redis_keys(prefix, redis_url)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--redis", default="")
    a = ap.parse_args()
    trio.run(run, a.writes, a.redis or services.redis_url())


if __name__ == "__main__":
    main()
