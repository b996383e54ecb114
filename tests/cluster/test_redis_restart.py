"""The cluster's Redis killed (SIGKILL) and started again mid-run, under two nodes on
127.0.0.1 and 127.0.0.2 that keep running (docs/cluster.md, failure behaviour):

* with the location on that Redis (usrloc db_mode 3) and the Redis keeping an append-only file
  synced on every write, no acknowledged registration is lost; registering works again without
  touching the nodes; htable writes made while Redis was away reach the other node; heartbeats
  resume and no node is declared dead;
* a Redis that keeps nothing comes back empty: the nodes put their shared htables back into it
  (nothing is wiped), and a node started afterwards loads that content."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.core.config import ClusterParams
from ksr.core.server import Server
from tests import services
from tests.registrar.helpers import exchange, register
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

pytestmark = pytest.mark.redis

SCRIPT = """
function ksr_request_route()
  if KSR.is_REGISTER() then
    KSR.registrar.save("location", 0)
    return
  end
  KSR.sl.sl_send_reply(404, "Not here")
end
"""
TABLES = ["ipban=>size=8;autoexpire=300;dmqreplicate=1;"]


@pytest.fixture
def redis_aof() -> Iterator[services.RedisOnDisk]:
    r = services.RedisOnDisk()
    yield r
    r.close()


@pytest.fixture
def redis_bare() -> Iterator[services.RedisOnDisk]:
    r = services.RedisOnDisk(on_disk=False)
    yield r
    r.close()


@contextlib.asynccontextmanager
async def node(tmp: Path, url: str, sid: int, location: bool = True) -> AsyncIterator[Server]:
    mods = ["sl", "usrloc", "registrar", "htable"]
    ul = {"db_url": f"{url}?prefix=loc_", "db_mode": 3} if location else {}
    cfg = make_config(
        mods,
        {"usrloc": ul, "htable": {"htable": TABLES}},
        listen=[f"udp:127.0.0.{sid}:0"],
        server_id=sid,
    )
    cfg.cluster = ClusterParams(
        redis_url=f"{url}?prefix=c_", heartbeat_interval=0.2, heartbeat_timeout=2.0
    )
    async with running_server(cfg, write_script(tmp, SCRIPT)) as s:
        yield s


async def until(pred: Any, limit: float = 20.0) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < limit, "not seen in time"
        await trio.sleep(0.05)


def ipban(s: Server) -> Any:
    return s.module("htable").table("ipban")


async def reg(peer: UdpPeer, s: Server, user: str) -> int:
    text = register(peer.port, user, call_id=f"call-{user}")
    return (await exchange(peer, udp_addr(s), text)).status


def found(s: Server, user: str) -> bool:
    try:
        info = s.rpc.call("ul.lookup", ["location", f"{user}@127.0.0.1"])
    except Exception:
        return False
    return len(info["Contacts"]) == 1


async def test_acknowledged_registrations_survive_a_redis_restart(
    tmp_path: Path, redis_aof: services.RedisOnDisk
) -> None:
    peer = await UdpPeer().bind()
    try:
        async with node(tmp_path, redis_aof.url, 1) as n1, node(tmp_path, redis_aof.url, 2) as n2:
            await until(lambda: all(len(n.cluster.nodes.alive_nodes()) == 2 for n in (n1, n2)))
            users = [(n1 if i % 2 else n2, f"u{i}") for i in range(20)]
            for s, user in users:
                assert await reg(peer, s, user) == 200
            ipban(n1).set("192.0.2.1", 1)
            await until(lambda: ipban(n2).has("192.0.2.1"))

            redis_aof.kill()
            await until(lambda: not n1.cluster.connected and not n2.cluster.connected)
            ipban(n1).set("192.0.2.2", 1)  # kept by node 1 while Redis is away
            await trio.sleep(0.5)
            redis_aof.start()

            # back on its own: registrations answered, the waiting write delivered
            await until(lambda: ipban(n2).has("192.0.2.2"))
            for s in (n1, n2):
                await until(lambda s=s: all(found(s, u) for _, u in users))
            assert await reg(peer, n2, "after") == 200
            assert found(n1, "after")
            ipban(n2).set("192.0.2.3", 1)
            await until(lambda: ipban(n1).has("192.0.2.3"))
            await until(lambda: all(len(n.cluster.nodes.alive_nodes()) == 2 for n in (n1, n2)))
            for s in (n1, n2):
                assert s.stats.value("cluster", "nodes_declared_dead") == 0
                assert s.stats.value("cluster", "redis_errors") > 0
    finally:
        peer.close()


async def test_a_redis_that_comes_back_empty_gets_the_tables_back(
    tmp_path: Path, redis_bare: services.RedisOnDisk
) -> None:
    url = redis_bare.url
    async with node(tmp_path, url, 1, False) as n1, node(tmp_path, url, 2, False) as n2:
        for i in range(5):
            ipban(n1).set(f"198.51.100.{i}", 1)
        await until(lambda: all(ipban(n2).has(f"198.51.100.{i}") for i in range(5)))
        redis_bare.kill()
        await until(lambda: not n1.cluster.connected and not n2.cluster.connected)
        redis_bare.start()  # empty
        await until(lambda: n1.cluster.connected and n2.cluster.connected)
        await trio.sleep(0.5)
        for s in (n1, n2):  # nothing was wiped
            assert all(ipban(s).has(f"198.51.100.{i}") for i in range(5))
        # the first node back put the tables in (the other then finds the counter raised)
        assert sum(s.stats.value("cluster", "reseeds") for s in (n1, n2)) >= 1
        # the content is back in Redis: a node started now loads it
        async with node(tmp_path, url, 3, False) as n3:
            assert all(ipban(n3).has(f"198.51.100.{i}") for i in range(5))
            assert ipban(n3).remaining("198.51.100.0") > 290
        # later writes flow as before
        ipban(n2).set("198.51.100.9", 1)
        await until(lambda: ipban(n1).has("198.51.100.9"))


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port + 10000))
        except OSError:
            return False
    return True


def test_a_redis_cluster_node_is_refused(tmp_path: Path) -> None:
    """Redis Cluster (sharding) is not supported (docs/cluster.md): a node pointed at a Redis
    Cluster node refuses to start and says why."""
    # a cluster node's bus port is its port + 10000: take a port below 55536
    port = next(p for p in range(27000 + os.getpid() % 900, 28000) if _free(p))
    rc = services.RedisOnDisk(on_disk=False, extra=["--cluster-enabled", "yes"], port=port)
    try:
        cfg = tmp_path / "ksr.toml"
        cfg.write_text(f'[core]\nserver_id = 1\n[cluster]\nredis_url = "{rc.url}"\n')
        script = write_script(tmp_path, SCRIPT)
        out = subprocess.run(
            [sys.executable, "-m", "ksr", "run", "--config", str(cfg), "--script", str(script)]
            + ["--listen", "udp:127.0.0.1:0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0
        assert "is a Redis Cluster node" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        rc.close()
