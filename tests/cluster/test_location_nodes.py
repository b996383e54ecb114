"""NAT keepalives and contact expiry with one location table shared by three nodes (usrloc
db_mode 3 on PostgreSQL) on 127.0.0.1, 127.0.0.2 and 127.0.0.3, their heartbeats on Redis:

* nathelper ``filter_server_id = 1`` (Kamailio's): a contact is pinged by the node that saved
  it only; without it, by every node; once its node is declared dead, by one survivor;
* contact expiry: each expired contact gives one ``contact-expired`` event in the whole
  cluster (the row's DELETE decides), and with usrloc ``server_id_filter = 1`` on the node that
  saved it, or on one survivor when that node died."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.core.config import ClusterParams
from ksr.core.server import Server
from tests import services
from tests.registrar.helpers import exchange, register
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

SCRIPT = """
function ksr_request_route()
  if KSR.is_REGISTER() then
    KSR.registrar.save("location", 0)
    return
  end
  KSR.sl.sl_send_reply(404, "Not here")
end
"""


@pytest.fixture
def urls() -> Any:
    p = f"t{uuid.uuid4().hex[:8]}_"
    yield f"{services.redis_url()}?prefix={p}", f"{services.pg_url()}?prefix={p}"
    services.drop_redis_keys(p)


async def run_node(
    tmp: Path,
    urls: tuple[str, str],
    sid: int,
    usrloc: dict[str, Any],
    nathelper: dict[str, Any],
    stop: trio.Event,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Node ``sid`` on 127.0.0.<sid> until ``stop`` is set."""
    modules = ["sl", "usrloc", "registrar"] + (["nathelper"] if nathelper else [])
    cfg = make_config(
        modules,
        {
            "usrloc": {"db_url": urls[1], "db_mode": 3, **usrloc},
            "registrar": {"min_expires": 1},
            **({"nathelper": nathelper} if nathelper else {}),
        },
        listen=[f"udp:127.0.0.{sid}:0"],
        server_id=sid,
    )
    cfg.cluster = ClusterParams(redis_url=urls[0], heartbeat_interval=0.1, heartbeat_timeout=1.5)
    async with running_server(cfg, write_script(tmp, SCRIPT)) as s:
        task_status.started(s)
        await stop.wait()


@contextlib.asynccontextmanager
async def three_nodes(
    tmp: Path, urls: tuple[str, str], usrloc: dict[str, Any], nathelper: dict[str, Any]
) -> AsyncIterator[tuple[list[Server], dict[int, trio.Event], trio.Nursery]]:
    """Nodes 1, 2, 3 all alive; set ``stops[i]`` to stop node i."""
    async with trio.open_nursery() as nursery:
        stops = {i: trio.Event() for i in (1, 2, 3)}
        servers = [
            await nursery.start(run_node, tmp, urls, i, usrloc, nathelper, stops[i])
            for i in (1, 2, 3)
        ]
        for s in servers:
            await until(lambda s=s: len(s.cluster.nodes.alive_nodes()) == 3)
        try:
            yield servers, stops, nursery
        finally:
            nursery.cancel_scope.cancel()


async def until(pred: Any, limit: float = 15.0) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < limit, "not seen in time"
        await trio.sleep(0.05)


class Phone:
    """A registered user agent on a real UDP socket; records who sends it keepalives."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.pings: Counter[str] = Counter()  # source IP -> keepalives received

    async def register(self, server: Server, nursery: trio.Nursery, expires: int = 3600) -> Phone:
        """Register at ``server``, then count what arrives."""
        self.peer = await UdpPeer().bind()
        contact = f"<sip:{self.user}@127.0.0.1:{self.peer.port}>;expires={expires}"
        text = register(self.peer.port, self.user, contacts=[contact], call_id=f"c-{self.user}")
        rpl = await exchange(self.peer, udp_addr(server), text)
        assert rpl.status == 200
        nursery.start_soon(self.listen)
        return self

    async def listen(self) -> None:
        while True:
            data, addr = await self.peer.sock.recvfrom(65535)
            if data == b"\x00\x00\x00\x00":
                self.pings[addr[0]] += 1

    def seen(self) -> set[str]:
        return set(self.pings)


@pytest.mark.parametrize("filtered", [1, 0])
async def test_keepalives_come_from_the_node_that_saved_the_contact(
    tmp_path: Path, urls: tuple[str, str], filtered: int
) -> None:
    nh = {"natping_interval": 1, "ping_nated_only": 0, "filter_server_id": filtered}
    async with three_nodes(tmp_path, urls, {}, nh) as ((n1, n2, n3), stops, nursery):
        alice = await Phone("alice").register(n1, nursery)
        bob = await Phone("bob").register(n2, nursery)
        carol = await Phone("carol").register(n3, nursery)
        ps = [alice, bob, carol]
        if not filtered:  # every node pings every contact of the shared table
            everyone = {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
            await until(lambda: all(p.seen() == everyone for p in ps))
            return
        await until(lambda: all(sum(p.pings.values()) >= 3 for p in ps))
        assert alice.seen() == {"127.0.0.1"}
        assert bob.seen() == {"127.0.0.2"}
        assert carol.seen() == {"127.0.0.3"}
        # node 3 dies: once it is declared dead, one survivor pings its contact
        stops[3].set()
        await until(lambda: not n1.cluster.nodes.is_alive(3))
        await until(lambda: not n2.cluster.nodes.is_alive(3))
        await trio.sleep(1.1)  # a ping of node 3's last round may still be on its way
        carol.pings.clear()
        await until(lambda: sum(carol.pings.values()) >= 3)
        assert len(carol.seen()) == 1
        assert carol.seen() < {"127.0.0.1", "127.0.0.2"}
        assert alice.seen() == {"127.0.0.1"}


@pytest.mark.parametrize("server_id_filter", [0, 1])
async def test_a_contact_expires_once_in_the_cluster(
    tmp_path: Path, urls: tuple[str, str], server_id_filter: int
) -> None:
    ul = {"timer_interval": 1, "server_id_filter": server_id_filter}
    expired: dict[int, list[str]] = {1: [], 2: [], 3: []}
    async with three_nodes(tmp_path, urls, ul, {}) as (servers, stops, nursery):
        for sid, s in enumerate(servers, 1):
            s.module("usrloc").expired_callbacks.append(
                lambda table, c, sid=sid: expired[sid].append(c.aor.split("@")[0])
            )
        users = {1: ["a1", "a2"], 2: ["b1", "b2"], 3: ["c1", "c2"]}
        for sid, s in enumerate(servers, 1):
            for u in users[sid]:
                await Phone(u).register(s, nursery, expires=2)
        if server_id_filter:  # node 3 dies before its contacts expire: a survivor takes them
            stops[3].set()
        everyone = sorted(u for us in users.values() for u in us)
        await until(lambda: sum(len(v) for v in expired.values()) >= len(everyone))
        await trio.sleep(2.5)  # more expiry runs on every node: nothing expires twice
        assert sorted(u for v in expired.values() for u in v) == everyone
        if server_id_filter:
            assert set(expired[1]) >= {"a1", "a2"}
            assert set(expired[2]) >= {"b1", "b2"}
            assert not set(expired[1]) & {"b1", "b2"}
            assert not set(expired[2]) & {"a1", "a2"}
            assert expired[3] == []
