"""Calls survive a restart of ksr: stored per db_mode in SQLite, PostgreSQL and Redis, reloaded,
and their end still gives one dialog:end and one CDR."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import trio

from ksr.db import open_store
from tests import services
from tests.support import running_server, udp_addr

from .conftest import proxy_config
from .test_calls import cdrs, establish, events
from .ua import Ua


def backend_url(kind: str, tmp: Path, prefix: str) -> str:
    if kind == "sqlite":
        return f"sqlite://{tmp / 'dlg.sqlite'}"
    if kind == "postgres":
        return f"{services.pg_url()}?prefix={prefix}"
    return f"{services.redis_url()}?prefix={prefix}"


@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
@pytest.mark.parametrize("db_mode", [1, 3])
async def test_call_survives_restart(tmp_path: Path, kind: str, db_mode: int) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    url = backend_url(kind, tmp_path, prefix)
    dparams = {"db_mode": db_mode, "db_url": url}
    a, b = await Ua("alice").start(), await Ua("bob").start()
    call_id = f"restart-{uuid.uuid4().hex[:8]}"
    try:
        cfg, script = proxy_config(tmp_path, dialog=dparams)
        async with running_server(cfg, script) as server:
            proxy = udp_addr(server)
            await establish(a, b, proxy, call_id)
            await trio.sleep(0.2)
        # the first ksr is gone; a new one on another port loads the call
        cfg, script = proxy_config(tmp_path, dialog=dparams)
        async with running_server(cfg, script) as server:
            mgr = server.module("dialog").mgr
            assert [d.callid for d in mgr.table] == [call_id]
            assert server.rpc.call("dlg.profile_get_size", ["calls"]) == 1
            new_proxy = udp_addr(server)
            a.route_set = [f"<sip:127.0.0.1:{new_proxy[1]};lr>"]
            await a.in_dialog("BYE", new_proxy)
            bye = await b.expect_request("BYE")
            await b.answer(bye, 200, new_proxy)
            await a.expect_reply(200, "BYE")
            assert events(server) == {"dialog:end": 1}
            (r,) = await cdrs(server, tmp_path)
            assert r["call_id"] == call_id
            assert r["end_reason"] == "caller-bye"
            assert r["account"] == "acct-alice"
            assert r["duration"] >= 0.2
            await trio.sleep(0)
        # ended dialogs leave the store
        store = open_store(url)
        try:
            from ksr.modules.dialog.kamrows import DIALOG_SPEC, VARS_SPEC
            from ksr.modules.dialog.store import SPEC

            if store.layout == "kamailio":
                assert store.table(DIALOG_SPEC).all() == []
                assert store.table(VARS_SPEC).all() == []
            else:
                assert store.table(SPEC).all() == []
        finally:
            store.drop("dialog")
            store.drop("dialog_vars")
            store.drop("version")
            store.close()
    finally:
        a.close()
        b.close()


async def test_dialog_row_is_readable(tmp_path: Path) -> None:
    """In ksr's own layout the stored row holds the identifiers and a JSON document."""
    url = f"sqlite://{tmp_path / 'd.sqlite'}?layout=ksr"
    cfg, script = proxy_config(tmp_path, dialog={"db_mode": 1, "db_url": url})
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        async with running_server(cfg, script) as server:
            await establish(a, b, udp_addr(server), "rowtest-1")
            from ksr.modules.dialog.store import SPEC

            (row,) = open_store(url).table(SPEC).all()
            assert row["callid"] == "rowtest-1"
            assert row["state"] == 4
            data = json.loads(str(row["data"]))
            assert data["caller"]["tag"] == a.local_tag
            assert data["variables"] == {"account": "acct-alice"}
    finally:
        a.close()
        b.close()


async def test_dialog_rows_in_kamailios_tables(tmp_path: Path) -> None:
    """On SQL (Kamailio's layout) a call is a row of Kamailio's dialog table, with its
    variables in dialog_vars."""
    url = f"sqlite://{tmp_path / 'd.sqlite'}"
    cfg, script = proxy_config(tmp_path, dialog={"db_mode": 1, "db_url": url})
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        async with running_server(cfg, script) as server:
            await establish(a, b, udp_addr(server), "rowtest-2")
            from ksr.modules.dialog.kamrows import DIALOG_SPEC, VARS_SPEC

            store = open_store(url)
            (row,) = store.table(DIALOG_SPEC).all()
            (dlg,) = server.module("dialog").mgr.table
            assert (row["hash_entry"], row["hash_id"]) == (dlg.h_entry, dlg.h_id)
            assert (row["callid"], row["state"]) == ("rowtest-2", 4)
            assert (row["from_tag"], row["to_tag"]) == (a.local_tag, dlg.callee.tag)
            assert row["start_time"] == int(dlg.start_ts)
            assert row["timeout"] == int(dlg.timeout_ts)
            assert row["caller_sock"] == dlg.caller.socket
            assert json.loads(str(row["xdata"])) == {
                "profiles": [{"name": n, "value": v} for n, v in dlg.profiles]
            }
            got = {r["dialog_key"]: r["dialog_value"] for r in store.table(VARS_SPEC).all()}
            assert got.pop("account") == "acct-alice"
            assert set(got) == {"ksr.state"}
            store.close()
    finally:
        a.close()
        b.close()
