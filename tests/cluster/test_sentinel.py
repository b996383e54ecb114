"""Redis Sentinel: a ``redis+sentinel://`` URL follows the master through a failover
(SENTINEL FAILOVER) for ksr's Redis store and for the cluster's shared htables. A throwaway
master, replica and Sentinel run on private ports (Debian's redis-server / redis-sentinel)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.sentinel
import trio

from ksr.db import DbError, TableSpec, open_store
from ksr.db.redis_connect import connect, sentinel_parts
from tests.support import free_port, make_config, running_server, write_script

pytestmark = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-sentinel")),
    reason="needs the Debian packages redis-server and redis-sentinel",
)


def wait(pred: Any, what: str, limit: float = 30.0) -> Any:
    deadline = time.monotonic() + limit
    while True:
        try:
            got = pred()
            if got:
                return got
        except redis.exceptions.RedisError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[dict[str, Any]]:
    master, replica, sport = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    for port, extra in ((master, []), (replica, ["--replicaof", "127.0.0.1", str(master)])):
        d = tmp_path / f"r{port}"
        d.mkdir()
        procs.append(
            subprocess.Popen(
                ["redis-server", "--port", str(port), "--dir", str(d), *common, *extra],
                stdout=subprocess.DEVNULL,
            )
        )
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sport}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor m 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds m 1000\nsentinel failover-timeout m 5000\n"
    )
    procs.append(subprocess.Popen(["redis-sentinel", str(conf)], stdout=subprocess.DEVNULL))
    s = redis.Redis(port=sport, decode_responses=True)
    try:
        wait(lambda: s.sentinel_slaves("m"), "the sentinel to find the replica")
        probe = redis.sentinel.Sentinel([("127.0.0.1", sport)])
        wait(lambda: probe.discover_master("m"), "the sentinel to vouch for the master")
        yield {"sentinel": s, "master": master, "replica": replica, "port": sport}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def failover(sentinel: dict[str, Any]) -> None:
    s = sentinel["sentinel"]
    wait(
        lambda: (
            redis.Redis(port=sentinel["replica"]).info("replication")["master_link_status"] == "up"
        ),
        "the replica in sync",
    )
    # NOGOODSLAVE until the Sentinel has judged the replica: ask again
    wait(lambda: s.execute_command("SENTINEL", "FAILOVER", "m"), "the failover to start")
    wait(
        lambda: int(s.sentinel_get_master_addr_by_name("m")[1]) == sentinel["replica"],
        "the replica to become master",
    )
    # ... and the old master a replica (until then it still takes writes: they would be lost)
    old = redis.Redis(port=sentinel["master"], decode_responses=True)
    wait(lambda: old.info("replication")["role"] == "slave", "the old master to step down")


def test_sentinel_url_parts() -> None:
    assert sentinel_parts("redis+sentinel://:pw@h1:1,h2:2/mymaster/3") == (
        [("h1", 1), ("h2", 2)],
        "mymaster",
        3,
        "pw",
    )
    for bad in ("redis+sentinel://h1/m", "redis+sentinel://h1:1/", "redis+sentinel://h:1/m/x"):
        with pytest.raises(DbError):
            sentinel_parts(bad)


def test_store_follows_the_master_through_a_failover(sentinel: dict[str, Any]) -> None:
    url = f"redis+sentinel://127.0.0.1:{sentinel['port']}/m?prefix=sx_"
    store = open_store(url)
    t = store.table(TableSpec("things", key="id", fields=(("id", "str"), ("v", "str"))))
    t.put({"id": "a", "v": "before"})
    failover(sentinel)
    # the first call after the failover may find the old connection gone: the store retries
    deadline = time.monotonic() + 20
    while True:
        try:
            t.put({"id": "b", "v": "after"})
            break
        except DbError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert {r["id"]: r["v"] for r in t.all()} == {"a": "before", "b": "after"}
    new_master = redis.Redis(port=sentinel["replica"], decode_responses=True)
    assert new_master.hget("sx_things:r:b", "v") == "after"  # written on the new master
    store.close()


def test_cluster_htable_follows_the_master(sentinel: dict[str, Any], tmp_path: Path) -> None:
    url = f"redis+sentinel://127.0.0.1:{sentinel['port']}/m?prefix=cx_"
    script = write_script(tmp_path, "function ksr_request_route() end")

    def cfg(sid: int):  # type: ignore[no-untyped-def]
        c = make_config(
            ["htable", "jsonrpcs"],
            {"htable": {"htable": ["t=>size=4;dmqreplicate=1;"]}},
            server_id=sid,
        )
        c.cluster.redis_url = url
        return c

    async def main() -> None:
        async with running_server(cfg(1), script) as n1, running_server(cfg(2), script) as n2:
            t1 = n1.module("htable").table("t")
            t2 = n2.module("htable").table("t")
            t1.set("k", "before")
            with trio.fail_after(10):
                while t2.get("k") != "before":
                    await trio.sleep(0.01)
            await trio.to_thread.run_sync(failover, sentinel)
            t1.set("k", "after")  # queued; sent once the new master is found
            with trio.fail_after(30):
                while t2.get("k") != "after":
                    await trio.sleep(0.05)
            assert connect(url).hget("cx_ksr:cluster:t:htable:t", "k") is not None

    trio.run(main)
