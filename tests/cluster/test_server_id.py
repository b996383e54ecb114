"""Node identity: core ``server_id`` is in what a node creates (usrloc ruids and location rows,
dialog ids), so several nodes share one location table and one dialog table without
collisions, and a node restarting restores only its own dialogs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from ksr.core.config import ConfigError, load_config
from ksr.modules.dialog.table import LOCAL_MASK, DialogTable, node_of
from tests import services
from tests.dialog.conftest import proxy_config
from tests.dialog.test_calls import establish
from tests.dialog.ua import Ua
from tests.registrar.helpers import exchange, register
from tests.registrar.scripts import script
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script


def test_server_id_is_a_core_key(tmp_path: Path) -> None:
    p = tmp_path / "ksr.toml"
    p.write_text("[core]\nserver_id = 7\n")
    assert load_config(p).core.server_id == 7
    p.write_text("[core]\nlisten = []\nserver_id = 300\n")
    with pytest.raises(ConfigError, match=r"ksr.toml:3: 'core.server_id': .*0\.\.255"):
        load_config(p)


def test_dialog_ids_carry_the_node() -> None:
    one, two = DialogTable(64, server_id=1), DialogTable(64, server_id=2)
    k1, k2 = one.new_key("same-call-id"), two.new_key("same-call-id")
    assert k1[0] == k2[0]
    assert k1 != k2
    assert (node_of(k1[1]), node_of(k2[1])) == (1, 2)
    # with worker processes each worker keeps its residue inside the node's id space
    w = DialogTable(64, server_id=5)
    w.share_ids(1, 2)
    ids = [w.new_key(f"c{i}")[1] for i in range(4)]
    assert [i & LOCAL_MASK for i in ids] == [2, 4, 6, 8]
    assert {node_of(i) for i in ids} == {5}
    # the local counter wraps inside the node's space (and skips ids still in use)
    w._next_id = LOCAL_MASK - 1
    assert node_of(w.new_key("late")[1]) == 5


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_two_nodes_share_one_location_table(tmp_path: Path, kind: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    url = (
        f"sqlite://{tmp_path / 'loc.sqlite'}"
        if kind == "sqlite"
        else f"{services.pg_url()}?prefix={prefix}"
    )
    suffix, text = script("lua")
    path = write_script(tmp_path, text, suffix)

    def cfg(server_id: int):  # type: ignore[no-untyped-def]
        return make_config(
            ["sl", "usrloc", "registrar"],
            {"usrloc": {"db_url": url, "db_mode": 3}},
            server_id=server_id,
        )

    peer = await UdpPeer().bind()
    try:
        async with running_server(cfg(1), path) as n1, running_server(cfg(2), path) as n2:
            rpl = await exchange(peer, udp_addr(n1), register(peer.port, "alice", call_id="a"))
            assert rpl.status == 200
            rpl = await exchange(peer, udp_addr(n2), register(peer.port, "bob", call_id="b"))
            assert rpl.status == 200
            # each node sees the other's row in the shared table, with its writer's id
            for node in (n1, n2):
                got = {}
                for user in ("alice", "bob"):
                    info = node.rpc.call("ul.lookup", ["location", f"{user}@127.0.0.1"])
                    (c,) = [x["Contact"] for x in info["Contacts"]]
                    got[user] = (c["Server-Id"], c["Ruid"].split("-")[:2])
                assert got == {"alice": (1, ["uloc", "1"]), "bob": (2, ["uloc", "2"])}
    finally:
        peer.close()


async def test_server_id_filter_loads_only_the_nodes_own_contacts(tmp_path: Path) -> None:
    """usrloc server_id_filter = 1 (Kamailio's): a caching node (db_mode 2) sharing the table
    loads only the rows it wrote; without the filter it loads every row."""
    url = f"sqlite://{tmp_path / 'loc.sqlite'}"
    suffix, text = script("lua")
    path = write_script(tmp_path, text, suffix)

    def cfg(server_id: int, **usrloc: object):  # type: ignore[no-untyped-def]
        return make_config(
            ["sl", "usrloc", "registrar"],
            {"usrloc": {"db_url": url, "db_mode": 3, **usrloc}},
            server_id=server_id,
        )

    peer = await UdpPeer().bind()
    try:
        async with running_server(cfg(1), path) as n1, running_server(cfg(2), path) as n2:
            for n, user in ((n1, "alice"), (n2, "bob")):
                rpl = await exchange(peer, udp_addr(n), register(peer.port, user, call_id=user))
                assert rpl.status == 200
        for flt, users in ((1, ["alice"]), (0, ["alice", "bob"])):
            c = cfg(1, db_mode=2, preload=["location"], server_id_filter=flt)
            async with running_server(c, path) as n1:
                table = n1.module("usrloc").domain("location")
                assert sorted(a.split("@")[0] for a in table.mem) == users
    finally:
        peer.close()


async def test_two_nodes_share_one_dialog_table(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'dlg.sqlite'}"
    dparams = {"db_mode": 1, "db_url": url, "hash_size": 1}  # one slot: ids must differ
    a, b = await Ua("alice").start(), await Ua("bob").start()

    def node(server_id: int):  # type: ignore[no-untyped-def]
        cfg, script_path = proxy_config(tmp_path, dialog=dparams)
        cfg.core.server_id = server_id
        return running_server(cfg, script_path)

    try:
        async with node(1) as n1, node(2) as n2:
            await establish(a, b, udp_addr(n1), "call-on-node-1")
            a.route_set = []
            await establish(a, b, udp_addr(n2), "call-on-node-2")
            await trio.sleep(0.1)
            keys = {d.callid: d.key for n in (n1, n2) for d in n.module("dialog").mgr.table}
            assert keys["call-on-node-1"] != keys["call-on-node-2"]
            assert node_of(keys["call-on-node-1"][1]) == 1
            assert node_of(keys["call-on-node-2"][1]) == 2
        # both rows are in the shared table; node 2 restarting restores only its own
        async with node(2) as n2:
            assert [d.callid for d in n2.module("dialog").mgr.table] == ["call-on-node-2"]
    finally:
        a.close()
        b.close()


def test_the_example_deployment_configs_load() -> None:
    """docs/cluster.md's three node configs are valid and differ only in server_id."""
    from tests.support import REPO

    d = REPO / "docs" / "cluster"
    cfgs = [load_config(d / f"node{i}.toml") for i in (1, 2, 3)]
    assert [c.core.server_id for c in cfgs] == [1, 2, 3]
    assert all(c.cluster.redis_url and c.cluster.secret for c in cfgs)
    texts = [(d / f"node{i}.toml").read_text().replace(f"server_id = {i}", "") for i in (1, 2, 3)]
    assert (
        texts[0].replace("Node 1", "")
        == texts[1].replace("Node 2", "")
        == texts[2].replace("Node 3", "")
    )
    compose = (d / "compose.yaml").read_text()
    assert all(f"./node{i}.toml:/etc/ksr/ksr.toml" in compose for i in (1, 2, 3))
