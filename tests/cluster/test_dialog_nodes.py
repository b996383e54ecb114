"""Dialogs shared between nodes (dialog ``enable_dmq = 1``, docs/cluster.md): in-process nodes
on 127.0.0.1 sharing one PostgreSQL dialog table and one Redis. A call set up through node 1 is
ended by a BYE that reaches node 2: node 2 matches it to the dialog (its variables too), ends
it with one dialog:end and one CDR, and node 1 lets go of its copy without an event."""

from __future__ import annotations

import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.core.config import ConfigError
from ksr.core.server import Server
from ksr.db import open_store
from ksr.db.redis_connect import connect
from tests import services
from tests.dialog.ua import Ua
from tests.support import make_config, running_server, udp_addr, write_script

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

SHARED_NAME = "cluster.test"  # every node's alias: the Record-Route names the service

SCRIPT = """
function ksr_request_route()
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if not KSR.is_ACK() and KSR.tm.t_check_trans() == 0 then return 1 end
  if KSR.pv.get("$tt") ~= nil then
    KSR.rr.loose_route()
    if KSR.dialog.is_known_dlg() > 0 then
      KSR.pv.sets("$shv(seen_account)", KSR.dialog.var_gete("account"))
    end
    KSR.tm.t_relay()
    return 1
  end
  if KSR.is_INVITE() then
    KSR.hdr.insert("Record-Route: <sip:cluster.test;lr>\\r\\n")
    KSR.dialog.var_sets("account", "acct-" .. KSR.pv.get("$fU"))
    KSR.dialog.dlg_manage()
    KSR.dialog.set_dlg_profile_static("calls")
  end
  KSR.tm.t_relay()
end

function ksr_dialog_event(evname)
  local k = "$shv(" .. evname .. ")"
  KSR.pv.seti(k, (KSR.pv.get(k) or 0) + 1)
  KSR.acc.acc_cdr(evname)
end
"""


def node_config(tmp: Path, server_id: int, pg: str, redis: str, **dialog: Any) -> Any:
    cfg = make_config(
        ["sl", "tm", "rr", "corex", "dialog", "acc"],
        {
            "dialog": {
                "enable_dmq": 1,
                "db_mode": 1,
                "db_url": pg,
                "profiles_no_value": "calls",
                "event_callback": "ksr_dialog_event",
                **dialog,
            },
            "acc": {
                "db_url": f"jsonl://{tmp / 'cdr.jsonl'}",
                "cdr_extra": "account=$dlg_var(account)",
            },
        },
        server_id=server_id,
        alias=[SHARED_NAME],
    )
    cfg.cluster.redis_url = redis
    return cfg


def drop_prefix(prefix: str, more: tuple[str, ...] = ()) -> None:
    """Remove what a test left under its key prefix in Redis and its tables in PostgreSQL."""
    services.drop_redis_keys(prefix)
    store = open_store(f"{services.pg_url()}?prefix={prefix}")
    try:
        for t in ("dialog", "dialog_vars", *more, "version"):
            store.drop(t)
    finally:
        store.close()


@pytest.fixture
def urls() -> Any:
    p = f"t{uuid.uuid4().hex[:8]}_"
    yield f"{services.pg_url()}?prefix={p}", f"{services.redis_url()}?prefix={p}"
    drop_prefix(p)


@contextlib.asynccontextmanager
async def nodes(
    tmp: Path, urls: tuple[str, str], n: int, **dialog: Any
) -> AsyncIterator[list[Server]]:
    script = write_script(tmp, SCRIPT)
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for i in range(1, n + 1):
            out.append(
                await stack.enter_async_context(
                    running_server(node_config(tmp, i, *urls, **dialog), script)
                )
            )
        yield out


async def establish(a: Ua, b: Ua, proxy: tuple[str, int], call_id: str) -> None:
    await a.invite_via(proxy, b, call_id)
    inv = await b.expect_request("INVITE")
    await b.answer(inv, 200, proxy)
    ok = await a.expect_reply(200)
    a.learn_from_2xx(ok)
    await a.in_dialog("ACK", proxy)
    await b.expect_request("ACK")


def cdrs(tmp: Path, call_id: str) -> list[dict[str, Any]]:
    p = tmp / "cdr.jsonl"
    lines = p.read_text().splitlines() if p.exists() else []
    return [r for r in map(json.loads, lines) if r.get("call_id") == call_id]


async def settle(servers: list[Server]) -> None:
    for s in servers:
        await s.module("acc").queue.wait_idle()


async def wait_for(pred: Any, limit: float = 5.0) -> None:
    with trio.fail_after(limit):
        while not pred():
            await trio.sleep(0.01)


def size(server: Server) -> int:
    return int(server.rpc.call("dlg.profile_get_size", ["calls"]))


def held(server: Server) -> list[str]:
    return [d.callid for d in server.module("dialog").mgr.table if d.state != 5]


async def test_bye_through_another_node_ends_the_call_once(
    tmp_path: Path, urls: tuple[str, str]
) -> None:
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        async with nodes(tmp_path, urls, 2) as (n1, n2):
            call_id = f"shared-{uuid.uuid4().hex[:8]}"
            await establish(a, b, udp_addr(n1), call_id)
            assert held(n1) == [call_id]
            assert held(n2) == []
            # profile sizes count the calls of every node (within about a second)
            await wait_for(lambda: size(n2) == 1)
            assert size(n1) == 1
            # the caller hangs up through node 2 (a moved address, the same shared name)
            await a.in_dialog("BYE", udp_addr(n2))
            bye = await b.expect_request("BYE")
            await b.answer(bye, 200, udp_addr(n2))
            await a.expect_reply(200, "BYE")
            await settle([n1, n2])
            # node 2 knew the dialog and its variables; node 1 let go of it, without an event
            assert n2.shared_vars.get("seen_account") == "acct-alice"
            assert n2.shared_vars.get("dialog:end") == 1
            await wait_for(lambda: held(n1) == [])
            assert n1.shared_vars.get("dialog:end") is None
            assert n1.stats.value("dialog", "cluster_released") == 1
            assert n2.stats.value("dialog", "cluster_taken") == 1
            (cdr,) = cdrs(tmp_path, call_id)
            assert cdr["end_reason"] == "caller-bye"
            assert cdr["account"] == "acct-alice"
            # the stored row is gone: nobody restores or times out an ended call
            assert n1.module("dialog").store.fetch(call_id) == []
            await wait_for(lambda: size(n1) == 0 and size(n2) == 0)
    finally:
        a.close()
        b.close()


async def test_refuses_without_db_mode_1_or_cluster(tmp_path: Path, urls: tuple[str, str]) -> None:
    script = write_script(tmp_path, SCRIPT)
    cfg = node_config(tmp_path, 1, *urls, db_mode=2)
    with pytest.raises(ConfigError, match="enable_dmq = 1 needs db_mode = 1"):
        async with running_server(cfg, script):
            pass
    cfg = node_config(tmp_path, 1, *urls)
    cfg.cluster.redis_url = ""
    with pytest.raises(ConfigError, match=r"needs \[cluster\] redis_url"):
        async with running_server(cfg, script):
            pass


async def test_a_dead_nodes_dialog_is_timed_out_once_by_a_survivor(
    tmp_path: Path, urls: tuple[str, str]
) -> None:
    """Node 2 stops holding a call (as if killed: no BYE, no event, its row stays); node 1
    takes node 2's dialogs and times the call out with a BYE to both sides and one CDR; node 3
    trying too (a second claimant) finds them taken."""
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        async with nodes(tmp_path, urls, 3, default_timeout=2) as (n1, n2, n3):
            call_id = f"dead-{uuid.uuid4().hex[:8]}"
            await establish(a, b, udp_addr(n2), call_id)
            d2 = n2.module("dialog")
            (dlg,) = [d for d in d2.mgr.table if d.callid == call_id]
            d2.mgr.drop(dlg)  # node 2 "dies": its copy is gone, the stored row stays
            t1, t3 = n1.module("dialog").takeover, n3.module("dialog").takeover
            assert t1.take(2) == 1
            assert t3.take(2) == 0  # a survivor that also thought it should: node 1 has it
            assert held(n1) == [call_id]
            # it ends: BYE to both sides, one CDR
            for ua in (a, b):
                bye = await ua.expect_request("BYE", timeout=8)
                assert bye.call_id == call_id
            await trio.sleep(0.3)
            await settle([n1, n2, n3])
            (cdr,) = cdrs(tmp_path, call_id)
            assert cdr["end_reason"] == "timeout"
            assert sum(n.shared_vars.get("dialog:end") or 0 for n in (n1, n2, n3)) == 1
            assert held(n1) == held(n3) == []
    finally:
        a.close()
        b.close()


async def test_bad_profile_totals_are_counted_not_applied(
    tmp_path: Path, urls: tuple[str, str]
) -> None:
    async with nodes(tmp_path, urls, 1) as (n1,):
        r = connect(services.redis_url())
        prefix = urls[1].split("prefix=")[1]
        key = f"{prefix}ksr:cluster:dlg:profiles"
        r.hset(key, "7", "not json")
        r.hset(key, "8", '{"n": 1, "p": {"calls": {"": -3}}}')
        r.hset(key, "x", '{"n": 1, "p": {}}')
        r.hset(key, "9", '{"n": 1, "p": {"calls": {"": 2}}}')
        await wait_for(lambda: n1.stats.value("dialog", "cluster_bad_data") >= 3)
        await wait_for(lambda: size(n1) == 2)  # node 9's well-formed entry counts


async def test_two_nodes_taking_one_dialog_at_once_end_with_one_holder(
    tmp_path: Path, urls: tuple[str, str]
) -> None:
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        async with nodes(tmp_path, urls, 3) as (n1, n2, n3):
            call_id = f"race-{uuid.uuid4().hex[:8]}"
            await establish(a, b, udp_addr(n1), call_id)
            s2, s3 = (n.module("dialog").shared_dlg for n in (n2, n3))
            (c2,), (c3,) = s2.store.fetch(call_id), s3.store.fetch(call_id)
            s2.adopt(c2)  # both before either notice comes back
            s3.adopt(c3)
            await wait_for(lambda: sorted(len(held(n)) for n in (n1, n2, n3)) == [0, 0, 1])
            await trio.sleep(0.3)
            assert sorted(len(held(n)) for n in (n1, n2, n3)) == [0, 0, 1]
            # the one holding it ends it normally: one CDR
            (holder,) = [n for n in (n1, n2, n3) if held(n)]
            await a.in_dialog("BYE", udp_addr(holder))
            bye = await b.expect_request("BYE")
            await b.answer(bye, 200, udp_addr(holder))
            await a.expect_reply(200, "BYE")
            await settle([n1, n2, n3])
            assert len(cdrs(tmp_path, call_id)) == 1
    finally:
        a.close()
        b.close()


async def test_malformed_notices_are_counted_and_change_nothing(
    tmp_path: Path, urls: tuple[str, str]
) -> None:
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        async with nodes(tmp_path, urls, 1) as (n1,):
            call_id = f"bad-{uuid.uuid4().hex[:8]}"
            await establish(a, b, udp_addr(n1), call_id)
            r = connect(services.redis_url())
            prefix = urls[1].split("prefix=")[1]
            channel = f"{prefix}ksr:cluster:writes"
            (dlg,) = n1.module("dialog").mgr.table
            key = f"{dlg.h_entry}:{dlg.h_id}"
            for args in (["nonsense", 9], [key], [key, "x"], [None, 9]):
                doc = {"n": "9-other", "t": "dialog:moves", "o": "moved", "a": args}
                r.publish(channel, f"999999 {json.dumps(doc)}")
            r.publish(channel, "not a write")
            await wait_for(lambda: n1.stats.value("cluster", "bad_messages") >= 5)
            assert held(n1) == [call_id]  # still held, still working
            await a.in_dialog("BYE", udp_addr(n1))
            bye = await b.expect_request("BYE")
            await b.answer(bye, 200, udp_addr(n1))
            await settle([n1])
            assert len(cdrs(tmp_path, call_id)) == 1
    finally:
        a.close()
        b.close()


async def test_calls_go_on_when_the_cluster_redis_is_away(
    tmp_path: Path, urls: tuple[str, str]
) -> None:
    """Redis does not answer (a dead address): the node starts, its calls are tracked and end
    with one CDR; the failed exchanges are logged and counted, nothing crashes."""
    from tests.support import free_port

    dead = f"redis://127.0.0.1:{free_port(socket.SOCK_STREAM)}/0?prefix=nobody_"
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        async with nodes(tmp_path, (urls[0], dead), 1) as (n1,):
            call_id = f"noredis-{uuid.uuid4().hex[:8]}"
            await establish(a, b, udp_addr(n1), call_id)
            assert size(n1) == 1
            await a.in_dialog("BYE", udp_addr(n1))
            bye = await b.expect_request("BYE")
            await b.answer(bye, 200, udp_addr(n1))
            await settle([n1])
            assert len(cdrs(tmp_path, call_id)) == 1
            await wait_for(lambda: n1.stats.value("dialog", "cluster_redis_errors") >= 1)
    finally:
        a.close()
        b.close()
