"""Calls through a real ksr (tm + dialog + acc) between two real UDP user agents: every way a
call ends gives exactly one event and one CDR with the right fields."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from ksr.core.server import Server
from tests.support import running_server, udp_addr

from .conftest import proxy_config
from .ua import Ua


@asynccontextmanager
async def call_setup(tmp: Path, **kw: Any) -> AsyncIterator[tuple[Server, Ua, Ua, tuple[str, int]]]:
    cfg, script = proxy_config(tmp, **kw)
    async with running_server(cfg, script) as server:
        a, b = await Ua("alice").start(), await Ua("bob").start()
        try:
            yield server, a, b, udp_addr(server)
        finally:
            a.close()
            b.close()


async def establish(a: Ua, b: Ua, proxy: tuple[str, int], call_id: str) -> None:
    await a.invite_via(proxy, b, call_id)
    inv = await b.expect_request("INVITE")
    await b.answer(inv, 180, proxy)
    await b.answer(inv, 200, proxy)
    ok = await a.expect_reply(200)
    a.learn_from_2xx(ok)
    await a.in_dialog("ACK", proxy)
    await b.expect_request("ACK")


def events(server: Server) -> dict[str, Any]:
    return {k: v for k, v in server.shared_vars.items() if k.startswith("dialog:")}


async def cdrs(server: Server, tmp: Path) -> list[dict[str, Any]]:
    await server.module("acc").queue.wait_idle()
    p = tmp / "cdr.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def cid() -> str:
    return f"dlgtest-{uuid.uuid4().hex[:10]}"


async def test_caller_hangs_up(tmp_path: Path) -> None:
    async with call_setup(tmp_path) as (server, a, b, proxy):
        call_id = cid()
        await establish(a, b, proxy, call_id)
        dlg = server.module("dialog")
        assert server.rpc.call("dlg.stats_active", []) == {
            "starting": 0,
            "connecting": 0,
            "answering": 0,
            "ongoing": 1,
            "all": 1,
        }
        assert server.rpc.call("dlg.profile_get_size", ["calls"]) == 1
        listed = server.rpc.call("dlg.list", [])
        assert listed[0]["call-id"] == call_id
        assert listed[0]["state"] == 4
        assert listed[0]["caller"]["tag"] == a.local_tag
        assert listed[0]["callee"]["tag"] == b.local_tag
        # where each side's messages came from (the 200 as received, not the copy relayed)
        (d,) = dlg.mgr.table
        assert d.caller.addr == f"udp:127.0.0.1:{a.peer.port}"
        assert d.callee.addr == f"udp:127.0.0.1:{b.peer.port}"
        await trio.sleep(0.3)
        await a.in_dialog("BYE", proxy)
        bye = await b.expect_request("BYE")
        await b.answer(bye, 200, proxy)
        await a.expect_reply(200, "BYE")
        # a retransmitted BYE changes nothing
        await a.peer.send(
            a._req(
                "BYE", a.remote_target, a.cseq, f"<{b.local_uri}>;tag={b.local_tag}", a.route_set
            ),
            proxy,
        )
        await trio.sleep(0.1)
        assert events(server) == {"dialog:start": 1, "dialog:end": 1}
        assert server.shared_vars["last_callid"] == call_id
        assert server.rpc.call("dlg.profile_get_size", ["calls"]) == 0
        assert server.rpc.call("dlg.list", [])[0]["state"] == 5
        recs = await cdrs(server, tmp_path)
        assert len(recs) == 1
        r = recs[0]
        assert r["call_id"] == call_id
        assert r["end_reason"] == "caller-bye"
        assert r["status"] == 200
        assert r["from_tag"] == a.local_tag
        assert r["to_tag"] == b.local_tag
        assert r["from_uri"] == "sip:alice@127.0.0.1"
        assert r["to_uri"] == "sip:bob@127.0.0.1"
        assert r["caller"] == "alice"
        assert r["callee"] == "bob"
        assert r["src_ip"] == "127.0.0.1"
        assert r["account"] == "acct-alice"
        assert 0.25 <= r["duration"] < 3
        assert r["start_time"] <= r["answer_time"] <= r["end_time"]
        assert r["end_time"].endswith("Z")
        assert server.stats.value("dialog", "processed_dialogs") == 1
        assert server.stats.value("dialog", "active_dialogs") == 0
        assert dlg.mgr.table.count_states()[5] == 1


async def test_callee_hangs_up(tmp_path: Path) -> None:
    async with call_setup(tmp_path) as (server, a, b, proxy):
        await establish(a, b, proxy, cid())
        await b.in_dialog("BYE", proxy)
        bye = await a.expect_request("BYE")
        await a.answer(bye, 200, proxy)
        await b.expect_reply(200, "BYE")
        assert events(server) == {"dialog:start": 1, "dialog:end": 1}
        (r,) = await cdrs(server, tmp_path)
        assert r["end_reason"] == "callee-bye"


async def test_callee_busy(tmp_path: Path) -> None:
    async with call_setup(tmp_path) as (server, a, b, proxy):
        await a.invite_via(proxy, b, cid())
        inv = await b.expect_request("INVITE")
        await b.answer(inv, 486, proxy)
        await a.expect_reply(486)
        await trio.sleep(0.1)
        assert events(server) == {"dialog:failed": 1}
        (r,) = await cdrs(server, tmp_path)
        assert r["end_reason"] == "failed"
        assert r["status"] == 486
        assert r["answer_time"] is None
        assert r["duration"] == 0
        assert server.stats.value("dialog", "failed_dialogs") == 1


async def test_caller_cancels(tmp_path: Path) -> None:
    async with call_setup(tmp_path) as (server, a, b, proxy):
        text = await a.invite_via(proxy, b, cid())
        inv = await b.expect_request("INVITE")
        await b.answer(inv, 180, proxy)
        await a.expect_reply(180)
        assert server.rpc.call("dlg.stats_active", [])["connecting"] == 1
        await a.cancel_via(proxy, text)
        cancel = await b.expect_request("CANCEL")
        await b.answer(cancel, 200, proxy)
        await b.answer(inv, 487, proxy)
        await a.expect_reply(487)
        await trio.sleep(0.1)
        assert events(server) == {"dialog:failed": 1}
        (r,) = await cdrs(server, tmp_path)
        assert r["end_reason"] == "cancelled"
        assert r["status"] == 487


async def test_timeout_sends_bye_to_both(tmp_path: Path) -> None:
    async with call_setup(tmp_path, dialog={"default_timeout": 1, "send_bye": 1}) as (
        server,
        a,
        b,
        proxy,
    ):
        await establish(a, b, proxy, cid())
        bye_a = await a.expect_request("BYE", timeout=5)
        bye_b = await b.expect_request("BYE", timeout=5)
        assert bye_a.to_tag == a.local_tag
        assert bye_b.to_tag == b.local_tag
        await a.answer(bye_a, 200, proxy)
        await b.answer(bye_b, 200, proxy)
        await trio.sleep(0.1)
        assert events(server) == {"dialog:start": 1, "dialog:end": 1}
        (r,) = await cdrs(server, tmp_path)
        assert r["end_reason"] == "timeout"
        assert 0.9 <= r["duration"] < 3
        assert server.stats.value("dialog", "expired_dialogs") == 1


async def test_timeout_after_the_ack_counts_from_the_answer(tmp_path: Path) -> None:
    """The no-ACK timer is still pending when the ACK comes (it is not re-armed): at its
    time it finds the call confirmed and waits for the rest of the lifetime."""
    params = {"default_timeout": 2, "noack_timeout": 1, "send_bye": 1}
    async with call_setup(tmp_path, dialog=params) as (server, a, b, proxy):
        await establish(a, b, proxy, cid())
        assert await a.peer.nothing(1.5)  # past the no-ACK timer: no BYE yet
        bye_a = await a.expect_request("BYE", timeout=5)
        await a.answer(bye_a, 200, proxy)
        await b.answer(await b.expect_request("BYE", timeout=5), 200, proxy)
        await trio.sleep(0.1)
        (r,) = await cdrs(server, tmp_path)
        assert r["end_reason"] == "timeout"
        assert 1.9 <= r["duration"] < 3


async def test_end_by_rpc(tmp_path: Path) -> None:
    async with call_setup(tmp_path) as (server, a, b, proxy):
        await establish(a, b, proxy, cid())
        (d,) = server.rpc.call("dlg.list", [])
        assert server.rpc.call("dlg.end_dlg", [d["h_entry"], d["h_id"]]) == "OK"
        await a.expect_request("BYE")
        await b.expect_request("BYE")
        # a BYE from the caller crossing ours: no second event
        await a.in_dialog("BYE", proxy)
        await trio.sleep(0.2)
        assert events(server) == {"dialog:start": 1, "dialog:end": 1}
        (r,) = await cdrs(server, tmp_path)
        assert r["end_reason"] == "rpc"
        resp = server.rpc.handle(
            {
                "jsonrpc": "2.0",
                "method": "dlg.end_dlg",
                "params": [d["h_entry"], d["h_id"]],
                "id": 1,
            }
        )
        assert resp is not None
        assert resp["error"] == {"code": 404, "message": "Dialog not found"}


async def test_unknown_bye_creates_nothing(tmp_path: Path) -> None:
    async with call_setup(tmp_path) as (server, a, b, proxy):
        a.call_id, a.remote_tag, a.remote_target, a.remote_uri = (
            cid(),
            "nope",
            b.contact,
            b.local_uri,
        )
        await a.in_dialog("BYE", proxy)
        await b.expect_request("BYE")  # relayed on, as any in-dialog request
        await trio.sleep(0.1)
        assert events(server) == {}
        assert len(server.module("dialog").mgr.table) == 0
        assert await cdrs(server, tmp_path) == []


async def test_invite_answered_statelessly_leaves_no_dialog(tmp_path: Path) -> None:
    """dlg_manage, then sl_send_reply: no transaction took the INVITE, so its dialog is
    dropped when the route ends: no event, no CDR, the profile released."""
    async with call_setup(tmp_path) as (server, a, b, proxy):
        await a.invite_via(proxy, b, cid(), ruri="sip:nobody@127.0.0.1")
        assert (await a.expect_reply(404)).status == 404
        assert len(server.module("dialog").mgr.table) == 0
        assert server.rpc.call("dlg.profile_get_size", ["calls"]) == 0
        await trio.sleep(0.1)
        assert events(server) == {}
        assert await cdrs(server, tmp_path) == []
