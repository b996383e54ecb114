"""Authentication across nodes (docs/cluster.md): a nonce one node issued is accepted by the
others (the [cluster] secret signs them), and a nonce-count used on one node is a replay on
every other (an atomic check-and-set on the cluster's Redis)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ksr.core.server import Server
from tests import services
from tests.registrar.digest_client import authorization
from tests.registrar.helpers import exchange, register
from tests.registrar.test_auth import RC_LUA, add_subscriber
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> object:
    p = f"t{uuid.uuid4().hex[:8]}_"
    yield p
    services.drop_redis_keys(p)


@contextlib.asynccontextmanager
async def node(tmp: Path, db: str, redis_url: str, secret: str) -> AsyncIterator[Server]:
    cfg = make_config(
        ["sl", "usrloc", "registrar", "auth", "auth_db"],
        {"auth_db": {"db_url": db}, "usrloc": {"db_url": db}},
    )
    cfg.cluster.redis_url = redis_url
    cfg.cluster.secret = secret
    async with running_server(cfg, write_script(tmp, RC_LUA)) as s:
        yield s


async def test_nonce_from_node_1_accepted_at_node_2_replay_refused_at_node_3(
    tmp_path: Path, prefix: str
) -> None:
    db = f"sqlite://{tmp_path}/k.sqlite"
    add_subscriber(db)
    url = f"{services.redis_url()}?prefix={prefix}"
    peer = await UdpPeer().bind()
    p = peer.port
    try:
        async with (
            node(tmp_path, db, url, "s1") as n1,
            node(tmp_path, db, url, "s1") as n2,
            node(tmp_path, db, url, "s1") as n3,
            node(tmp_path, db, url, "other") as stranger,
        ):
            first = await exchange(peer, udp_addr(n1), register(p, call_id="c1"))
            assert (first.status, first.get("X-Rc")) == (401, "-5")
            creds = authorization(first, "alice", "s3cret")
            ok = await exchange(
                peer, udp_addr(n2), register(p, call_id="c1", cseq=2, extra=[creds])
            )
            assert (ok.status, ok.get("X-Rc")) == (200, "1")  # node 1's nonce, node 2 accepts
            again = await exchange(
                peer, udp_addr(n3), register(p, call_id="c1", cseq=3, extra=[creds])
            )
            assert again.get("X-Rc") == "-6"  # the same nonce-count at node 3: a replay
            nc2 = authorization(first, "alice", "s3cret", nc=2)
            fine = await exchange(
                peer, udp_addr(n3), register(p, call_id="c1", cseq=4, extra=[nc2])
            )
            assert fine.get("X-Rc") == "1"
            back = await exchange(
                peer, udp_addr(n1), register(p, call_id="c1", cseq=5, extra=[nc2])
            )
            assert back.get("X-Rc") == "-6"  # ... and nc=2 is then used on node 1 too
            # a node with another secret does not take the cluster's nonces (stale: challenge)
            nc3 = authorization(first, "alice", "s3cret", nc=3)
            odd = await exchange(
                peer, udp_addr(stranger), register(p, call_id="c1", cseq=6, extra=[nc3])
            )
            assert odd.get("X-Rc") == "-4"
            assert n2.stats.value("auth", "nc_cluster_fallbacks") == 0
    finally:
        peer.close()


async def test_redis_away_the_node_decides_alone(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path}/k.sqlite"
    add_subscriber(db)
    dead = "redis://127.0.0.1:1/0?prefix=x_"  # nothing listens there
    peer = await UdpPeer().bind()
    p = peer.port
    try:
        async with node(tmp_path, db, dead, "s1") as n1:
            first = await exchange(peer, udp_addr(n1), register(p, call_id="d1"))
            creds = authorization(first, "alice", "s3cret")
            ok = await exchange(
                peer, udp_addr(n1), register(p, call_id="d1", cseq=2, extra=[creds])
            )
            assert ok.get("X-Rc") == "1"
            again = await exchange(
                peer, udp_addr(n1), register(p, call_id="d1", cseq=3, extra=[creds])
            )
            assert again.get("X-Rc") == "-6"  # the node's own book still refuses the replay
            assert n1.stats.value("auth", "nc_cluster_fallbacks") >= 1
    finally:
        peer.close()
