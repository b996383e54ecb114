"""A CDR backend that is down loses nothing: PostgreSQL behind a relay the test cuts and
restores. Records queue in memory, go to the spool file, survive a restart of ksr and land in
the table exactly once when the database is reachable again."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
import trio

from ksr.db import open_store
from tests import services
from tests.support import free_port, running_server, udp_addr

from .conftest import proxy_config
from .tcpgate import TcpGate
from .ua import Ua


async def busy_call(a: Ua, b: Ua, proxy: tuple[str, int]) -> None:
    await a.invite_via(proxy, b, f"outage-{uuid.uuid4().hex[:10]}")
    inv = await b.expect_request("INVITE")
    await b.answer(inv, 486, proxy)
    await a.expect_reply(486)


async def wait_for(cond: object, limit: float = 10.0) -> None:
    with trio.fail_after(limit):
        while not cond():  # type: ignore[operator]
            await trio.sleep(0.05)


@pytest.mark.postgres
async def test_postgres_outage_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ksr.acc")
    port = free_port(trio.socket.SOCK_STREAM)
    prefix = f"o{uuid.uuid4().hex[:8]}_"
    url = f"{services.pg_url_via('127.0.0.1', port)}?prefix={prefix}"
    acc = {"db_url": url, "cdr_spool_after": 0.3, "cdr_spool_file": str(tmp_path / "spool.jsonl")}
    gate = TcpGate(port, services.pg_address())
    a, b = await Ua("alice").start(), await Ua("bob").start()
    direct = open_store(f"{services.pg_url()}?prefix={prefix}")
    try:
        async with trio.open_nursery() as nursery:
            # 1. the database is unreachable: three calls, their CDRs wait (memory, then spool)
            cfg, script = proxy_config(tmp_path, acc=acc)
            async with running_server(cfg, script) as server:
                q = server.module("acc").queue
                for _ in range(3):
                    await busy_call(a, b, udp_addr(server))
                await wait_for(lambda: q.spooled_count() == 3)
                await busy_call(a, b, udp_addr(server))  # still in memory when ksr stops
            assert "cannot write records" in caplog.text
            assert "spooled" in caplog.text
            # 2. the database is back and ksr starts again: the spool is written
            await gate.open(nursery)
            cfg, script = proxy_config(tmp_path, acc=acc)
            async with running_server(cfg, script) as server:
                q = server.module("acc").queue
                await q.wait_idle()
                # 3. an outage while running: the record waits in memory, then is written
                gate.shut()
                await busy_call(a, b, udp_addr(server))
                await wait_for(lambda: q.down_since is not None)
                await gate.open(nursery)
                await q.wait_idle()
                assert "is back" in caplog.text
            gate.shut()
        from ksr.modules.acc.writers import StoreWriter

        spec = StoreWriter(url, "acc_cdrs", ["account", "fu"]).cdr_spec
        rows = direct.table(spec).all()
        assert len(rows) == 5
        assert len({r["call_id"] for r in rows}) == 5
        assert {r["status"] for r in rows} == {486}
        assert {r["end_reason"] for r in rows} == {"failed"}
        assert not (tmp_path / "spool.jsonl").exists()
    finally:
        a.close()
        b.close()
        direct.drop("acc_cdrs")
        direct.close()
