"""htables shared between nodes through one Redis (docs/cluster.md): three in-process nodes
and a ``ksr run -n 2`` node on 127.0.0.1 with a unique key prefix per test. A ban set on node 1
is seen on node 3 (the time it took is printed; bench/cluster_htable.py measures it), a node
started later loads the content, malformed channel messages are logged and counted."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.core.server import Server
from ksr.db.redis_connect import connect
from tests import services
from tests.support import ksr_process, make_config, running_server, write_script
from tests.workers.test_shared_modules import SCRIPT, Client

pytestmark = pytest.mark.redis

TABLES = ["ipban=>size=8;autoexpire=300;dmqreplicate=1;", "local=>size=4;"]


def cluster_url(prefix: str) -> str:
    return f"{services.redis_url()}?prefix={prefix}"


@contextlib.asynccontextmanager
async def node(tmp: Path, url: str, server_id: int) -> AsyncIterator[Server]:
    cfg = make_config(["htable", "jsonrpcs"], {"htable": {"htable": TABLES}}, server_id=server_id)
    cfg.cluster.redis_url = url
    async with running_server(cfg, write_script(tmp, "function ksr_request_route() end")) as s:
        yield s


def table(server: Server, name: str) -> Any:
    return server.module("htable").table(name)


async def wait_for(pred: Any, limit: float = 5.0) -> float:
    """Seconds until pred() holds (real time: the messages go through a real Redis)."""
    t0 = time.perf_counter()
    while not pred():
        assert time.perf_counter() - t0 < limit, "not replicated in time"
        await trio.sleep(0.001)
    return time.perf_counter() - t0


@pytest.fixture
def prefix() -> Any:
    p = f"t{uuid.uuid4().hex[:8]}_"
    yield p
    services.drop_redis_keys(p)


async def test_a_ban_on_node_1_is_seen_on_node_3(tmp_path: Path, prefix: str) -> None:
    url = cluster_url(prefix)
    async with node(tmp_path, url, 1) as n1, node(tmp_path, url, 2) as n2:
        async with node(tmp_path, url, 3) as n3:
            assert n1.rpc.call("htable.seti", ["ipban", "192.0.2.7", 1]).startswith("Ok")
            took = await wait_for(lambda: table(n3, "ipban").has("192.0.2.7"))
            print(f"\nban on node 1 seen on node 3 after {took * 1000:.1f} ms")
            assert table(n3, "ipban").get("192.0.2.7") == 1
            assert table(n3, "ipban").remaining("192.0.2.7") > 290  # autoexpire applies
            await wait_for(lambda: table(n2, "ipban").has("192.0.2.7"))
            # every write operation travels: increments add up, deletes and clears too
            n2.rpc.call("htable.seti", ["ipban", "n", 0])
            await wait_for(lambda: all(table(n, "ipban").get("n") == 0 for n in (n1, n3)))
            table(n1, "ipban").add("n", 2)
            table(n3, "ipban").add("n", 3)
            await wait_for(lambda: all(table(n, "ipban").get("n") == 5 for n in (n1, n2, n3)))
            n3.rpc.call("htable.delete", ["ipban", "192.0.2.7"])
            await wait_for(lambda: not table(n1, "ipban").has("192.0.2.7"))
            # a table without dmqreplicate stays local to its node
            table(n1, "local").set("k", "v")
            await trio.sleep(0.2)
            assert not table(n3, "local").has("k")
            assert n1.stats.value("cluster", "writes_sent") == 2  # the seti and the add
            assert n3.stats.value("cluster", "writes_applied") >= 3
        # a node started later loads the current content
        table(n2, "ipban").set("198.51.100.1", 1)
        await wait_for(lambda: table(n1, "ipban").has("198.51.100.1"))
        async with node(tmp_path, url, 4) as n4:
            t4 = table(n4, "ipban")
            assert t4.get("198.51.100.1") == 1
            assert t4.get("n") == 5
            assert not t4.has("192.0.2.7")
            assert 290 < t4.remaining("198.51.100.1") <= 300
            n2.rpc.call("htable.flush", ["ipban"])
            await wait_for(lambda: not t4.has("198.51.100.1"))


async def test_malformed_messages_are_logged_and_counted(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = cluster_url(prefix)
    async with node(tmp_path, url, 1) as n1:
        r = connect(url)
        channel = f"{prefix}ksr:cluster:writes"
        bad = [
            b"\xff\xfe not even text",
            "no-sequence {}",
            "99999999 {not json",
            "99999999 [1, 2]",
            '99999999 {"n": "x", "t": "htable:ipban", "o": "set", "a": [{"deep": 1}]}',
            '99999999 {"n": "x", "t": "htable:nosuch", "o": "set", "a": ["k", 1]}',
            '99999999 {"n": "x", "t": "htable:ipban", "o": "replica_restore", "a": []}',
            '99999999 {"n": "x", "t": "htable:ipban", "o": "set", "a": []}',
        ]
        for m in bad:
            r.publish(channel, m)
        await wait_for(lambda: n1.stats.value("cluster", "bad_messages") == len(bad))
        # still serving the channel: a good write after the bad ones is applied
        r.publish(channel, '99999999 {"n": "x", "t": "htable:ipban", "o": "set", "a": ["ok", 1]}')
        await wait_for(lambda: table(n1, "ipban").has("ok"))
        assert "cluster: bad message on the channel" in caplog.text


def test_a_node_with_two_workers(tmp_path: Path, prefix: str) -> None:
    """``ksr run -n 2``: a write made in either worker reaches the other node, and a write of
    the other node is seen by both workers."""
    url = cluster_url(prefix)
    cfg = f"""
loadmodule = ["sl", "tm", "rr", "siputils", "htable", "jsonrpcs"]
[cluster]
redis_url = "{url}"
[modparam.htable]
htable = ["t=>size=4;dmqreplicate=1;"]
"""

    async def other_node(k: dict[str, Any]) -> None:
        c = Client(k["port"])
        ocfg = make_config(
            ["htable", "jsonrpcs"], {"htable": {"htable": ["t=>size=4;dmqreplicate=1;"]}}
        )
        ocfg.cluster.redis_url = url
        script = write_script(tmp_path, "function ksr_request_route() end")
        async with running_server(ocfg, script) as other:
            t = table(other, "t")
            await trio.to_thread.run_sync(c.ask, 0, "htset", "from-w0")
            await wait_for(lambda: t.get("k") == "from-w0")
            await trio.to_thread.run_sync(c.ask, 1, "htset", "from-w1")
            await wait_for(lambda: t.get("k") == "from-w1")
            t.set("k", "from-other")
            for w in (0, 1):
                deadline = time.monotonic() + 5
                while not (await trio.to_thread.run_sync(c.ask, w, "htget")).startswith(
                    "got from-other"
                ):
                    assert time.monotonic() < deadline, f"worker {w} did not get the write"
                    await trio.sleep(0.01)

    with ksr_process(write_script(tmp_path, SCRIPT), cfg, extra_args=["-n", "2"]) as k:
        deadline = time.monotonic() + 15
        while k["log"].read_text().count("listening on") < 2:
            assert time.monotonic() < deadline, k["log"].read_text()
            time.sleep(0.05)
        trio.run(other_node, k)
