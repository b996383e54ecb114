"""Kamailio's transaction accounting through a real ksr between two real UDP user agents:
message flags decide which transactions give `acc` and `missed_calls` rows (in Kamailio's table
layout, SQLite and PostgreSQL) and `ACC:` log lines; a Kamailio-created schema (its own
acc-create.sql, where acc_cdrs has no unique key) takes the rows and the CDR."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.core.server import Server
from tests import services
from tests.registrar.conftest import _cleanup, unique_prefix
from tests.support import make_config, running_server, udp_addr, write_script

from .test_calls import establish
from .ua import Ua

# The flag logic of Kamailio's example script: INVITEs accounted (1), missed calls (2) when
# routed to a user, BYEs accounted even when they fail (3), CANCELs flagged (1). X-Failed asks for flag 3 on an INVITE.
SCRIPT = """
function ksr_request_route()
  if KSR.is_CANCEL() then
    KSR.setflag(1)
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if not KSR.is_ACK() and KSR.tm.t_check_trans() == 0 then return 1 end
  if KSR.siputils.has_totag() > 0 then
    KSR.rr.loose_route()
    if KSR.is_BYE() then KSR.setflag(1); KSR.setflag(3) end
    KSR.tm.t_relay()
    return 1
  end
  if KSR.is_method("MESSAGE") then
    KSR.acc.acc_db_request("202 Accepted here", "")
    KSR.acc.acc_log_request("202 Accepted here")
    KSR.sl.sl_send_reply(202, "Accepted")
    return 1
  end
  KSR.rr.record_route()
  if KSR.is_INVITE() then
    KSR.setflag(1)
    KSR.setflag(2)
    if KSR.hdr.is_present("X-Failed") > 0 then KSR.setflag(3) end
  end
  KSR.tm.t_relay()
end
"""
EXTRA = "src_user=$fU;src_ip=$si;dst_user=$rU"


def acc_params(db_url: str, **kw: Any) -> dict[str, Any]:
    return {
        "db_url": db_url,
        "log_flag": 1,
        "log_missed_flag": 2,
        "failed_transaction_flag": 3,
        "db_flag": 1,
        "db_missed_flag": 2,
        "log_extra": EXTRA,
        "db_extra": EXTRA,
        **kw,
    }


@asynccontextmanager
async def proxy(
    tmp: Path, acc: dict[str, Any], dialog: bool = False
) -> AsyncIterator[tuple[Server, Ua, Ua, tuple[str, int]]]:
    mods = ["sl", "tm", "rr", "siputils", "textops", "acc"] + (["dialog"] if dialog else [])
    params: dict[str, Any] = {"acc": acc, "rr": {"append_fromtag": 1}}
    if dialog:
        params["dialog"] = {"dlg_flag": 1}
    async with running_server(make_config(mods, params), write_script(tmp, SCRIPT)) as server:
        a, b = await Ua("alice").start(), await Ua("bob").start()
        try:
            yield server, a, b, udp_addr(server)
        finally:
            a.close()
            b.close()


def unsent_invite(a: Ua, b: Ua, call_id: str) -> str:
    """The INVITE ``invite_via`` would send, as text to change before sending."""
    a.call_id, a.cseq, a.remote_uri = call_id, 1, b.local_uri
    return a._req("INVITE", b.contact, 1, f"<{b.local_uri}>", [])


def cid() -> str:
    return f"acctest-{uuid.uuid4().hex[:10]}"


class Rows:
    """Reads the accounting tables back, SQLite or PostgreSQL."""

    def __init__(self, url: str, prefix: str = "") -> None:
        self.url, self.prefix = url, prefix

    def __call__(self, table: str, call_id: str) -> list[dict[str, Any]]:
        """The rows of one call ([] when nothing ever created the table)."""
        found = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_name = %s"
            if self.pg
            else "SELECT name FROM sqlite_master WHERE name = ?",
            (self.prefix + table,),
        )
        if not found:
            return []
        sql = f"SELECT * FROM {self.prefix}{table} WHERE callid = {'%s' if self.pg else '?'} ORDER BY id"
        return self.query(sql, (call_id,))

    @property
    def pg(self) -> bool:
        return self.url.startswith("postgres")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        if self.pg:
            import psycopg
            from psycopg.rows import dict_row

            url = services.psycopg_url(self.url.split("?")[0])
            with psycopg.connect(url, autocommit=True, row_factory=dict_row) as c:
                return list(c.execute(sql, args).fetchall())
        conn = sqlite3.connect(self.url.removeprefix("sqlite://"))
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, args).fetchall()]
        finally:
            conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Rows]]:
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path}/acc.sqlite"
        yield url, Rows(url)
        return
    prefix = unique_prefix()
    try:
        yield f"{services.pg_url()}?prefix={prefix}", Rows(services.pg_url(), prefix)
    finally:
        _cleanup(services.pg_url(), prefix)


async def flushed(server: Server) -> None:
    await server.module("acc").queue.wait_idle()


async def test_answered_call_gives_invite_and_bye_rows(
    tmp_path: Path, backend: tuple[str, Rows], caplog: pytest.LogCaptureFixture
) -> None:
    url, rows = backend
    with caplog.at_level(logging.INFO, logger="ksr.acc"):
        async with proxy(tmp_path, acc_params(url)) as (server, a, b, prx):
            call_id = cid()
            await establish(a, b, prx, call_id)
            await a.in_dialog("BYE", prx)
            bye = await b.expect_request("BYE")
            await b.answer(bye, 200, prx)
            await a.expect_reply(200, "BYE")
            await flushed(server)
    acc = rows("acc", call_id)
    assert [(r["method"], r["sip_code"], r["sip_reason"]) for r in acc] == [
        ("INVITE", "200", "OK"),
        ("BYE", "200", "OK"),
    ]
    inv = acc[0]
    assert (inv["from_tag"], inv["to_tag"]) == (a.local_tag, b.local_tag)
    assert (inv["src_user"], inv["src_ip"], inv["dst_user"]) == ("alice", "127.0.0.1", "bob")
    assert inv["time"]  # a local timestamp, as Kamailio writes it
    assert rows("missed_calls", call_id) == []
    lines = [
        r.getMessage() for r in caplog.records if "ACC: transaction answered" in r.getMessage()
    ]
    assert len(lines) == 2
    assert (
        f";method=INVITE;from_tag={a.local_tag};to_tag={b.local_tag};call_id={call_id};" in lines[0]
    )
    assert lines[0].endswith(";code=200;reason=OK;src_user=alice;src_ip=127.0.0.1;dst_user=bob")


async def test_busy_callee_is_a_missed_call_and_not_accounted(
    tmp_path: Path, backend: tuple[str, Rows]
) -> None:
    url, rows = backend
    async with proxy(tmp_path, acc_params(url)) as (server, a, b, prx):
        call_id = cid()
        await a.invite_via(prx, b, call_id)
        inv = await b.expect_request("INVITE")
        await b.answer(inv, 486, prx)
        await a.expect_reply(486)
        await flushed(server)
    (missed,) = rows("missed_calls", call_id)
    assert (missed["method"], missed["sip_code"], missed["sip_reason"]) == (
        "INVITE",
        "486",
        "Busy Here",
    )
    assert missed["to_tag"] == b.local_tag
    assert missed["src_user"] == "alice"
    assert rows("acc", call_id) == []  # failed_transaction_flag was not set on the INVITE


async def test_failed_transaction_flag_accounts_the_failure(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/acc.sqlite"
    rows = Rows(url)
    async with proxy(tmp_path, acc_params(url, failed_filter="404")) as (server, a, b, prx):
        call_id = cid()
        text = unsent_invite(a, b, call_id)
        await a.peer.send(text.replace("Call-ID:", "X-Failed: 1\r\nCall-ID:", 1), prx)
        inv = await b.expect_request("INVITE")
        await b.answer(inv, 486, prx)
        await a.expect_reply(486)
        await flushed(server)
    assert [(r["method"], r["sip_code"]) for r in rows("acc", call_id)] == [("INVITE", "486")]
    assert len(rows("missed_calls", call_id)) == 1  # reported once, not once per reply


async def test_cancelled_call_is_missed_and_cancel_reported_only_on_demand(
    tmp_path: Path,
) -> None:
    for report_cancels in (0, 1):
        url = f"sqlite://{tmp_path}/acc{report_cancels}.sqlite"
        rows = Rows(url)
        params = acc_params(url, report_cancels=report_cancels)
        async with proxy(tmp_path, params) as (server, a, b, prx):
            call_id = cid()
            text = await a.invite_via(prx, b, call_id)
            inv = await b.expect_request("INVITE")
            await b.answer(inv, 180, prx)
            await a.expect_reply(180)
            await a.cancel_via(prx, text)
            await a.expect_reply(200, "CANCEL")
            cancel = await b.expect_request("CANCEL")
            await b.answer(cancel, 200, prx)
            await b.answer(inv, 487, prx)
            await a.expect_reply(487)
            await flushed(server)
        (missed,) = rows("missed_calls", call_id)
        assert (missed["method"], missed["sip_code"]) == ("INVITE", "487")
        # the script flags the CANCEL too; it is accounted only with report_cancels
        cancels = [(r["method"], r["sip_code"]) for r in rows("acc", call_id)]
        assert cancels == ([("CANCEL", "200")] if report_cancels else [])


async def test_acc_db_request_from_the_script(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite://{tmp_path}/acc.sqlite"
    with caplog.at_level(logging.INFO, logger="ksr.acc"):
        async with proxy(tmp_path, acc_params(url)) as (server, a, b, prx):
            call_id = cid()
            text = unsent_invite(a, b, call_id)
            await a.peer.send(text.replace("INVITE", "MESSAGE"), prx)
            await a.expect_reply(202, "MESSAGE")
            await flushed(server)
    (row,) = Rows(url)("acc", call_id)
    assert (row["method"], row["sip_code"], row["sip_reason"]) == (
        "MESSAGE",
        "202",
        "Accepted here",
    )
    assert row["src_user"] == "alice"
    assert any(
        r.getMessage().startswith("ACC: request accounted: timestamp=")
        and f"call_id={call_id};code=202;reason=Accepted here" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.postgres
async def test_kamailio_created_schema_takes_rows_and_cdrs(tmp_path: Path) -> None:
    """Tables made by Kamailio's own acc-create.sql (acc_cdrs without a unique key): acc,
    missed_calls and the CDR are plain INSERTs into them."""
    sql_file = Path("/usr/share/kamailio/postgres/acc-create.sql")
    if not sql_file.is_file():
        pytest.skip("kamailio-postgres-modules is not installed (acc-create.sql)")
    prefix = unique_prefix()
    rows = Rows(services.pg_url(), prefix)
    import psycopg

    pg = services.psycopg_url(services.pg_url())
    text = sql_file.read_text()
    for name in ("missed_calls", "acc_cdrs", "acc"):  # longest names first
        text = text.replace(f"TABLE {name} ", f"TABLE {prefix}{name} ")
        text = text.replace(f"INDEX {name}_", f"INDEX {prefix}{name}_")
        text = text.replace(f"ON {name} ", f"ON {prefix}{name} ")
    text = text.replace("INSERT INTO version", f"INSERT INTO {prefix}version")
    try:
        with psycopg.connect(pg, autocommit=True) as c:
            c.execute(
                f"CREATE TABLE {prefix}version (table_name VARCHAR(32) NOT NULL, "
                "table_version INTEGER DEFAULT 0 NOT NULL)"
            )
            c.execute(text)
        params = acc_params(
            f"{services.pg_url()}?prefix={prefix}", cdr_enable=1, cdr_extra="src_ip=$si"
        )
        async with proxy(tmp_path, params, dialog=True) as (server, a, b, prx):
            call_id = cid()
            await establish(a, b, prx, call_id)
            await trio.sleep(0.2)
            await a.in_dialog("BYE", prx)
            bye = await b.expect_request("BYE")
            await b.answer(bye, 200, prx)
            await a.expect_reply(200, "BYE")
            await flushed(server)
            await trio.sleep(0.1)
            await flushed(server)
        assert [r["method"] for r in rows("acc", call_id)] == ["INVITE", "BYE"]
        (cdr,) = rows.query(f"SELECT * FROM {prefix}acc_cdrs")
        assert cdr["duration"] >= 0.2
        assert cdr["end_time"] >= cdr["start_time"]
        assert "cdr_id" not in cdr  # Kamailio's layout kept as it was
    finally:
        _cleanup(services.pg_url(), prefix)


async def test_detect_direction_keeps_the_caller_first(tmp_path: Path) -> None:
    """A BYE from the callee: with detect_direction (rr's ftag tells the direction) the row
    keeps the caller's tag in from_tag, as Kamailio swaps them; without, the BYE's own From."""
    for detect in (0, 1):
        url = f"sqlite://{tmp_path}/acc{detect}.sqlite"
        async with proxy(tmp_path, acc_params(url, detect_direction=detect)) as (server, a, b, prx):
            call_id = cid()
            await establish(a, b, prx, call_id)
            await b.in_dialog("BYE", prx)
            bye = await a.expect_request("BYE")
            await a.answer(bye, 200, prx)
            await b.expect_reply(200, "BYE")
            await flushed(server)
        bye_row = next(
            r
            for r in Rows(url)(
                "acc",
                call_id,
            )
            if r["method"] == "BYE"
        )
        tags = (bye_row["from_tag"], bye_row["to_tag"])
        assert tags == ((a.local_tag, b.local_tag) if detect else (b.local_tag, a.local_tag))
