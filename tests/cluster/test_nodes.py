"""Node heartbeats through Redis (ksr/core/cluster_nodes.py): three in-process nodes on
127.0.0.1 see each other alive; a node that stops is declared dead once on every other node and
exactly one of them wins the claim; local clocks play no part."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.core.cluster_nodes import NodeInfo
from ksr.core.config import ClusterParams
from ksr.core.server import Server
from ksr.db.redis_connect import connect
from tests import services
from tests.support import (
    ksr_process,
    make_config,
    running_server,
    wait_workers,
    write_script,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def url() -> Any:
    p = f"t{uuid.uuid4().hex[:8]}_"
    yield f"{services.redis_url()}?prefix={p}"
    services.drop_redis_keys(p)


@contextlib.asynccontextmanager
async def node(tmp: Path, url: str, server_id: int, **cluster: Any) -> AsyncIterator[Server]:
    cfg = make_config(["jsonrpcs"], server_id=server_id)
    cfg.cluster = ClusterParams(
        redis_url=url, heartbeat_interval=0.1, heartbeat_timeout=1.5, **cluster
    )
    async with running_server(cfg, write_script(tmp, "function ksr_request_route() end")) as s:
        yield s


async def until(pred: Any, limit: float = 10.0) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < limit, "not seen in time"
        await trio.sleep(0.02)


def alive(s: Server) -> list[int]:
    return [n.server_id for n in s.cluster.nodes.alive_nodes()]


async def test_nodes_see_each_other_and_one_survivor_claims_the_dead(
    tmp_path: Path, url: str
) -> None:
    dead: dict[int, list[NodeInfo]] = {1: [], 2: []}
    async with node(tmp_path, url, 1) as n1, node(tmp_path, url, 2) as n2:
        n1.cluster.nodes.on_dead(dead[1].append)

        async def async_cb(info: NodeInfo) -> None:  # async callbacks run too
            await trio.sleep(0)
            dead[2].append(info)

        n2.cluster.nodes.on_dead(async_cb)
        async with node(tmp_path, url, 3) as n3:
            for s in (n1, n2, n3):
                await until(lambda s=s: alive(s) == [1, 2, 3])
            v = n1.cluster.nodes.node(3)
            assert v is not None
            assert v.alive
            assert v.addresses == tuple(str(x) for x in n3.listeners)
            assert v.workers == 1
            assert v.last >= v.started > 0
            assert n2.cluster.nodes.is_alive(3)
            assert not n2.cluster.nodes.is_alive(9)
            token3 = n3.cluster.node
        # node 3 stops heartbeating: declared dead once on 1 and on 2
        await until(lambda: dead[1] and dead[2])
        for s in (n1, n2):
            assert alive(s) == [1, 2]
            assert not s.cluster.nodes.is_alive(3)
        assert [d.server_id for d in dead[1] + dead[2]] == [3, 3]
        info = dead[1][0]
        assert info.token == token3
        assert not info.alive
        assert info.age >= 1.5 - 0.1
        # exactly one survivor wins the claim, and keeps it when asking again
        got = [await n1.cluster.nodes.claim(info, "dialogs")]
        got.append(await n2.cluster.nodes.claim(dead[2][0], "dialogs"))
        assert sorted(got) == [False, True]
        winner = n1 if got[0] else n2
        assert await winner.cluster.nodes.claim(info, "dialogs")
        await trio.sleep(0.5)  # more watches: no second declaration
        assert len(dead[1]) == len(dead[2]) == 1
        assert n1.stats.value("cluster", "nodes_declared_dead") == 1
        assert n1.stats.value("cluster", "nodes_alive") == 2


async def test_a_node_started_later_sees_the_dead_one_and_redis_time_rules(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with node(tmp_path, url, 5):
        pass
    # this process's clock runs a minute ahead: a node's liveness does not depend on it
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 60)
    dead: list[NodeInfo] = []
    async with node(tmp_path, url, 6) as n6, node(tmp_path, url, 7) as n7:
        n6.cluster.nodes.on_dead(dead.append)
        await until(lambda: alive(n6) == [6, 7] and alive(n7) == [6, 7])
        await until(lambda: len(dead) == 1)  # node 5 died before: declared once here too
        assert dead[0].server_id == 5
        r = connect(url)
        sec, _ = r.time()
        me = n6.cluster.nodes.node(7)
        assert me is not None
        assert abs(me.last - sec) < 5
        await trio.sleep(1.0)
        assert alive(n6) == [6, 7]


async def test_a_second_node_with_the_same_server_id_is_refused(tmp_path: Path, url: str) -> None:
    async with node(tmp_path, url, 8) as a:
        await until(lambda: alive(a) == [8])
        tok = a.cluster.node
        async with node(tmp_path, url, 8) as b:  # other addresses (its own port): another node
            await until(lambda: b.stats.value("cluster", "node_conflicts") >= 2)
            assert b.cluster.nodes.node(8).token == tok  # type: ignore[union-attr]
            assert a.stats.value("cluster", "node_conflicts") == 0


def test_heartbeat_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="twice"):
        ClusterParams(heartbeat_interval=1, heartbeat_timeout=1.5)
    with pytest.raises(ValueError, match="above 0"):
        ClusterParams(heartbeat_interval=0)


def test_a_node_with_two_workers_stays_alive_while_one_restarts(tmp_path: Path, url: str) -> None:
    cfg = (
        f'[core]\nserver_id = 4\n[cluster]\nredis_url = "{url}"\n'
        "heartbeat_interval = 0.2\nheartbeat_timeout = 3.0\n"
    )
    r = connect(url)
    prefix = url.rsplit("prefix=", 1)[1]
    alive_key = f"{prefix}ksr:cluster:alive:4"
    script = write_script(tmp_path, "function ksr_request_route() end")
    with ksr_process(script, cfg, extra_args=["-n", "2"], ready=wait_workers(2)) as k:
        deadline = time.monotonic() + 20
        while not r.exists(alive_key):
            assert time.monotonic() < deadline, k["log"].read_text()
            time.sleep(0.05)
        rec = json.loads(r.hget(f"{prefix}ksr:cluster:nodes", "4"))
        assert rec["workers"] == 2
        assert rec["pid"] == k["proc"].pid
        assert r.get(alive_key) == rec["token"]
        kids = Path(f"/proc/{k['proc'].pid}/task/{k['proc'].pid}/children").read_text().split()
        os.kill(int(kids[0]), signal.SIGKILL)  # worker 0 dies; the supervisor restarts it
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            assert r.get(alive_key) == rec["token"], "node looked dead while a worker restarted"
            time.sleep(0.05)
        again = json.loads(r.hget(f"{prefix}ksr:cluster:nodes", "4"))
        assert again["started"] == rec["started"]  # the same run of the node
        # the cluster view through `ksr rpc` on the node's socket (served by worker 0 again
        # once it has restarted)
        deadline = time.monotonic() + 30
        while True:
            out = subprocess.run(
                [sys.executable, "-m", "ksr", "rpc", "--socket", k["rpc"], "cluster.nodes"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert out.returncode == 0, out.stderr
        (view,) = json.loads(out.stdout)
        assert view["server_id"] == 4
        assert view["state"] == "alive"
        assert view["workers"] == 2
        assert view["local"] is True


async def test_malformed_node_records_are_counted_and_skipped(tmp_path: Path, url: str) -> None:
    """Another program (or a broken node) writes garbage where nodes heartbeat: each watch
    logs it (throttled) and counts it; the good records still count."""
    prefix = url.rsplit("prefix=", 1)[1]
    r = connect(url)
    r.hset(f"{prefix}ksr:cluster:nodes", "x", "{}")
    r.hset(f"{prefix}ksr:cluster:nodes", "9", "not json")
    r.hset(f"{prefix}ksr:cluster:nodes", "10", '{"token": "t", "last": "soon"}')
    r.hset(f"{prefix}ksr:cluster:nodes", "11", '{"token": "t11", "last": 1.0}')
    r.set(f"{prefix}ksr:cluster:alive:11", "t11")
    r.hset(f"{prefix}ksr:cluster:figures:11", "0", "garbage")
    async with node(tmp_path, url, 1) as n1:
        await until(lambda: n1.stats.value("cluster", "bad_messages") >= 8)
        assert alive(n1) == [1]
        assert n1.rpc.call("cluster.nodes", [])[0]["server_id"] == 1


async def test_an_unreadable_watch_answer_is_counted_and_the_node_goes_on(
    tmp_path: Path, url: str
) -> None:
    """A watch answer of another shape (seen once while Redis restarted: a mapping where the
    script's flat list belongs) is counted and logged; the node keeps watching and
    heartbeating instead of its watch task failing the server."""
    async with node(tmp_path, url, 1) as n1:
        await until(lambda: alive(n1) == [1])
        nodes = n1.cluster.nodes
        real = nodes._watch
        bad_before = n1.stats.value("cluster", "bad_messages")
        answers = iter([{"0": "1"}, ["1"], ["17", "x", "a", "b", "c"]])
        nodes._watch = lambda **kw: next(answers, None) or real(**kw)
        await until(lambda: n1.stats.value("cluster", "bad_messages") >= bad_before + 3)
        nodes._watch = real
        watched = nodes.watched
        await watched.wait()
        assert alive(n1) == [1]
        assert n1.rpc.call("cluster.nodes", [])[0]["state"] == "alive"
