"""The cluster view (docs/cluster.md): ``cluster.nodes``, ``cluster.dialogs`` and
``dmq.list_nodes`` (``ksr rpc`` on a ``-n 2`` node: tests/cluster/test_nodes.py), and the per-node metrics of xhttp_prom, with two nodes
on 127.0.0.1 and a real call through node 2 between two real UDP user agents."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.core.config import ClusterParams
from ksr.core.rpc import RpcError
from ksr.core.server import Server
from tests import services
from tests.dialog.conftest import proxy_config
from tests.dialog.test_calls import establish
from tests.dialog.ua import Ua
from tests.support import running_server, udp_addr

pytestmark = pytest.mark.redis


@pytest.fixture
def url() -> Any:
    p = f"t{uuid.uuid4().hex[:8]}_"
    yield f"{services.redis_url()}?prefix={p}"
    services.drop_redis_keys(p)


@contextlib.asynccontextmanager
async def node(tmp: Path, url: str, server_id: int) -> AsyncIterator[Server]:
    d = tmp / f"n{server_id}"
    d.mkdir()
    cfg, script = proxy_config(d)
    cfg.loadmodule += ["xhttp", "xhttp_prom"]
    cfg.core.server_id = server_id
    cfg.cluster = ClusterParams(redis_url=url, heartbeat_interval=0.1, heartbeat_timeout=1.5)
    async with running_server(cfg, script) as s:
        yield s


async def until(pred: Any, limit: float = 10.0) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < limit, "not seen in time"
        await trio.sleep(0.02)


def by_id(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["server_id"]: r for r in rows}


async def test_nodes_heartbeats_and_dialogs_per_node(tmp_path: Path, url: str) -> None:
    async with node(tmp_path, url, 1) as n1, node(tmp_path, url, 2) as n2:
        await until(lambda: len(n1.cluster.nodes.alive_nodes()) == 2)
        nodes = by_id(n1.rpc.call("cluster.nodes", []))
        assert set(nodes) == {1, 2}
        assert nodes[1]["local"]
        assert not nodes[2]["local"]
        assert nodes[2]["state"] == "alive"
        assert nodes[2]["addresses"] == [str(s) for s in n2.listeners]
        assert nodes[2]["last_heartbeat"] >= nodes[2]["started"] > 0
        # a call through node 2: node 1 sees it in node 2's figures
        a, b = await Ua("alice").start(), await Ua("bob").start()
        try:
            await establish(a, b, udp_addr(n2), f"view-{uuid.uuid4().hex[:8]}")

            def dialogs() -> dict[int, dict[str, Any]]:
                return by_id(n1.rpc.call("cluster.dialogs", [])["nodes"])

            await until(lambda: dialogs()[2]["active"] == 1)
            got = n1.rpc.call("cluster.dialogs", [])
            assert dialogs()[1]["active"] == 0
            assert got["total"] == 1
            await until(  # INVITE, ACK (as published by node 2's next heartbeat)
                lambda: (
                    by_id(n1.rpc.call("cluster.nodes", []))[2]["stats"]["core:rcv_requests"] >= 2
                )
            )
            dmq = n1.rpc.call("dmq.list_nodes", [])
            host, port = udp_addr(n2)
            mine = [d for d in dmq if d["local"]]
            other = [d for d in dmq if not d["local"]]
            assert len(mine) == 1
            assert other[0]["host"] == host
            assert other[0]["port"] == str(port)
            assert other[0]["proto"] == "udp"
            assert other[0]["status"] == "active"
            # the metrics of node 1 label every node by its server_id
            text = n1.module("xhttp_prom").render().decode()
            assert 'ksr_cluster_node_up{server_id="2"} 1.0' in text
            assert 'ksr_cluster_node_active_dialogs{server_id="2"} 1.0' in text
            assert 'ksr_cluster_node_active_dialogs{server_id="1"} 0.0' in text
            assert 'ksr_cluster_node_rcv_requests_total{server_id="2"}' in text
            assert "ksr_cluster_node_heartbeat_age_seconds{" in text
        finally:
            a.close()
            b.close()
    # without a cluster the commands say why
    async with contextlib.AsyncExitStack() as stack:
        cfg, script = proxy_config(tmp_path)
        lone = await stack.enter_async_context(running_server(cfg, script))
        with pytest.raises(Exception, match="redis_url"):
            lone.rpc.call("cluster.nodes", [])


async def test_a_dead_node_shows_as_dead_then_timeout(tmp_path: Path, url: str) -> None:
    async with node(tmp_path, url, 1) as n1:
        async with node(tmp_path, url, 3):
            await until(lambda: n1.cluster.nodes.is_alive(3))
        await until(lambda: not n1.cluster.nodes.is_alive(3))
        nodes = by_id(n1.rpc.call("cluster.nodes", []))
        assert nodes[3]["state"] == "dead"
        assert nodes[3]["age"] >= 1.4
        dmq = {d["local"]: d for d in n1.rpc.call("dmq.list_nodes", [])}
        assert dmq[0]["status"] == "timeout"
        assert dmq[1]["status"] == "active"
        # a dead node's figures are not counted in the total
        assert n1.rpc.call("cluster.dialogs", [])["total"] == 0
        text = n1.module("xhttp_prom").render().decode()
        assert 'ksr_cluster_node_up{server_id="3"} 0.0' in text
        # a node taken out of service for good is forgotten; a live or unknown one is not
        with pytest.raises(RpcError, match="alive"):
            await n1.rpc.call("cluster.forget", [1])
        with pytest.raises(RpcError, match="not known"):
            await n1.rpc.call("cluster.forget", [77])
        assert await n1.rpc.call("cluster.forget", ["3"]) == "Ok."
        await n1.cluster.nodes.watched.wait()
        assert [n["server_id"] for n in n1.rpc.call("cluster.nodes", [])] == [1]
