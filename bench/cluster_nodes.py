"""Node heartbeats (docs/cluster.md): what a heartbeat and a look at the others cost, and how
long after a node stops the others declare it dead.

    python -m bench.cluster_nodes [--nodes 3] [--rounds 5] [--interval 0.2] [--timeout 1.0]
                                  [--redis redis://127.0.0.1:6379/0]

In-process nodes share one Redis (a fresh key prefix, removed afterwards). The Lua scripts are
timed from a plain client (round trip as a node's thread sees it, with ``--nodes`` records in
Redis). Then, ``--rounds`` times, the last node is stopped and the time until node 1 declares
it dead is measured: expected ``timeout`` (the key's lifetime from its last heartbeat, which
was up to one ``interval`` before the stop) give or take one ``interval`` (the next look).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import trio

from ksr.core.cluster_nodes import _BEAT, _WATCH, NodeInfo
from ksr.core.config import ClusterParams
from ksr.core.server import Server
from ksr.db.redis_connect import connect
from tests import services
from tests.support import make_config, running_server, write_script


async def run_node(
    url: str,
    sid: int,
    interval: float,
    timeout: float,
    script: Path,
    stop: trio.Event,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    cfg = make_config(["sl"], server_id=sid)
    cfg.cluster = ClusterParams(
        redis_url=url, heartbeat_interval=interval, heartbeat_timeout=timeout
    )
    async with running_server(cfg, script) as s:
        task_status.started(s)
        await stop.wait()


def time_scripts(url: str, prefix: str, n: int) -> tuple[float, float]:
    """Median milliseconds of one heartbeat and of one look, from a plain client."""
    r = connect(url)
    beat, watch = r.register_script(_BEAT), r.register_script(_WATCH)
    rec = '{"token": "bench", "host": "h", "addresses": ["udp:192.0.2.9:5060"], "pid": 1, "workers": 1}'
    keys = [
        f"{prefix}ksr:cluster:nodes",
        f"{prefix}ksr:cluster:alive:250",
        f"{prefix}ksr:cluster:figures:250",
    ]
    b, w = [], []
    for _ in range(300):
        t0 = time.perf_counter()
        beat(keys=keys, args=[250, "bench", 1000, rec, 0, '{"dialog:active_dialogs": 1}'])
        b.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        watch(keys=[keys[0]], args=[f"{prefix}ksr:cluster:alive:", f"{prefix}ksr:cluster:figures:"])
        w.append((time.perf_counter() - t0) * 1000)
    r.hdel(keys[0], "250")
    return statistics.median(b), statistics.median(w)


async def run(nodes: int, rounds: int, interval: float, timeout: float, redis_url: str) -> None:
    prefix = f"b{uuid.uuid4().hex[:8]}_"
    url = f"{redis_url}?prefix={prefix}"
    tmp = Path(tempfile.mkdtemp(prefix="ksr-bench-"))
    script = write_script(tmp, "function ksr_request_route() end")
    try:
        async with trio.open_nursery() as nursery:
            stops = [trio.Event() for _ in range(nodes)]
            servers = [
                await nursery.start(run_node, url, i + 1, interval, timeout, script, stops[i])
                for i in range(nodes - 1)
            ]
            n1 = servers[0]
            while len(n1.cluster.nodes.alive_nodes()) < nodes - 1:
                await trio.sleep(0.01)
            beat_ms, watch_ms = await trio.to_thread.run_sync(time_scripts, url, prefix, nodes)
            print(
                f"heartbeat script {beat_ms:.2f} ms, look at {nodes} nodes {watch_ms:.2f} ms "
                "(median round trip of 300)"
            )
            took: list[float] = []
            for k in range(rounds):
                stop = trio.Event()
                seen = trio.Event()
                dead_at: list[float] = []

                def on_dead(
                    info: NodeInfo,
                    sid: int = nodes + k,
                    seen: trio.Event = seen,
                    dead_at: list[float] = dead_at,
                ) -> None:
                    if info.server_id == sid and not seen.is_set():
                        dead_at.append(time.monotonic())
                        seen.set()

                n1.cluster.nodes.on_dead(on_dead)
                await nursery.start(run_node, url, nodes + k, interval, timeout, script, stop)
                while not n1.cluster.nodes.is_alive(nodes + k):
                    await trio.sleep(0.01)
                await trio.sleep(interval * 3)
                t0 = time.monotonic()
                stop.set()
                await seen.wait()
                took.append(dead_at[0] - t0)
            print(
                f"stopped node declared dead after {statistics.median(took):.2f} s median "
                f"(min {min(took):.2f}, max {max(took):.2f}; {rounds} rounds, "
                f"interval {interval} s, timeout {timeout} s)"
            )
            beats = n1.stats.value("cluster", "heartbeats_sent")
            print(f"node 1 sent {beats} heartbeats")
            for e in stops:
                e.set()
            nursery.cancel_scope.cancel()
    finally:
        services.drop_redis_keys(prefix, redis_url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--redis", default="")
    a = ap.parse_args()
    trio.run(run, a.nodes, a.rounds, a.interval, a.timeout, a.redis or services.redis_url())


if __name__ == "__main__":
    main()
