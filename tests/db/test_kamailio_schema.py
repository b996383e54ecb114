"""Kamailio's table layouts (ksr/db/kamailio.py): what ksr creates is what Kamailio's own SQL
files create, rows Kamailio's tools write read back right, and a table of another schema version
or layout is refused by name, never written."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ksr.core.config import ConfigError
from ksr.db import SchemaMismatch, open_store
from ksr.db.kamailio import LAYOUTS, LOCATION, SUBSCRIBER
from ksr.modules.auth_db.subscribers import Subscribers
from ksr.modules.usrloc.contact import ALL_METHODS, KAM_LOCATION_SPEC, LOCATION_SPEC, Contact
from ksr.modules.usrloc.domain import Domain
from tests.db.kamdb import (
    KAMAILIO_PG_SCHEMA,
    KAMAILIO_SQLITE_SCHEMA,
    fresh_pg_database,
    kamailio_sqlite_database,
    pg_url,
)
from tests.kemi.scriptkit import server_with
from tests.registrar.conftest import _cleanup, unique_prefix

needs_files = pytest.mark.skipif(
    not (KAMAILIO_PG_SCHEMA / "usrloc-create.sql").exists(),
    reason="Kamailio's schema files (kamailio-postgres-modules) are not installed",
)
needs_sqlite_files = pytest.mark.skipif(
    not (KAMAILIO_SQLITE_SCHEMA / "usrloc-create.sql").exists(),
    reason="Kamailio's SQLite schema files (kamailio-sqlite-modules) are not installed",
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/kam.sqlite"
        return
    prefix, server = unique_prefix(), pg_url()
    try:
        yield f"{server}?prefix={prefix}"
    finally:
        _cleanup(server, prefix)


def _describe(url: str) -> dict[str, object]:
    """Columns, constraints, indexes and version rows of every table of a database."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        cols = c.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default, "
            "character_maximum_length FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
        idx = c.execute(
            "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "ORDER BY tablename, indexname"
        ).fetchall()
        versions = c.execute(
            "SELECT table_name, table_version FROM version ORDER BY table_name"
        ).fetchall()
    return {"columns": cols, "indexes": idx, "versions": versions}


@pytest.mark.postgres
@needs_files
def test_created_tables_match_kamailio_schema_files() -> None:
    """ksr's DDL for each layout gives the same columns (types, NULLs, defaults), constraints,
    indexes and version rows as kamdbctl's SQL files."""
    with fresh_pg_database(kamailio_schema=True) as theirs, fresh_pg_database(False) as ours:
        store = open_store(ours)
        for layout in LAYOUTS.values():
            if layout.name != "version":
                store.table(layout.spec())
        store.close()
        kam, ksr = _describe(theirs), _describe(ours)
        # their files also create tables ksr does not use (trusted, ...)
        names = set(LAYOUTS)
        for part in ("columns", "indexes", "versions"):
            got = [r for r in ksr[part] if r[0] in names]  # type: ignore[attr-defined]
            want = [r for r in kam[part] if r[0] in names]  # type: ignore[attr-defined]
            assert got, part
            assert got == want, part


def _describe_sqlite(path: Path) -> dict[str, object]:
    import sqlite3

    with sqlite3.connect(path) as c:
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out: dict[str, object] = {}
        for t in sorted(tables):
            idx = c.execute(f"PRAGMA index_list({t})").fetchall()
            out[t] = (
                c.execute(f"PRAGMA table_info({t})").fetchall(),
                sorted(
                    (i[1], i[2], c.execute(f"PRAGMA index_info({i[1]})").fetchall()) for i in idx
                ),
            )
        out["versions"] = sorted(c.execute("SELECT table_name, table_version FROM version"))
    return out


@needs_sqlite_files
def test_sqlite_tables_match_kamailio_sqlite_files(tmp_path: Path) -> None:
    """The same for SQLite: kamailio-sqlite-modules' files against ksr's DDL."""
    theirs = tmp_path / "theirs.sqlite"
    kamailio_sqlite_database(theirs)
    store = open_store(f"sqlite://{tmp_path}/ours.sqlite")
    for layout in LAYOUTS.values():
        if layout.name != "version":
            store.table(layout.spec())
    store.close()
    kam, ksr = _describe_sqlite(theirs), _describe_sqlite(tmp_path / "ours.sqlite")
    for name in LAYOUTS:
        assert ksr[name] == kam[name], name
    wanted = [v for v in kam["versions"] if v[0] in LAYOUTS]  # type: ignore[attr-defined]
    assert ksr["versions"] == wanted


def test_wrong_version_is_refused_by_name(sql_url: str) -> None:
    store = open_store(sql_url)
    store.table(KAM_LOCATION_SPEC)
    store.execute(  # type: ignore[attr-defined]
        f"UPDATE {store.prefix}version SET table_version = 8 "  # type: ignore[attr-defined]
        "WHERE table_name = 'location'"
    )
    store.close()
    again = open_store(sql_url)
    with pytest.raises(SchemaMismatch) as err:
        again.table(KAM_LOCATION_SPEC)
    assert str(err.value).startswith(
        "table location: invalid version 8 found in table version, expected 9"
    )
    # nothing was written: the table is empty, the version row unchanged
    assert again.execute(  # type: ignore[attr-defined]
        f"SELECT table_version FROM {again.prefix}version WHERE table_name = 'location'",  # type: ignore[attr-defined]
        fetch=True,
    )[0] == [(8,)]
    again.close()


def test_missing_version_row_is_refused(sql_url: str) -> None:
    store = open_store(sql_url)
    store.table(SUBSCRIBER.spec())
    store.execute(f"DELETE FROM {store.prefix}version WHERE table_name = 'subscriber'")  # type: ignore[attr-defined]
    store.close()
    with pytest.raises(SchemaMismatch, match="table subscriber: invalid version 0 .* expected 7"):
        open_store(sql_url).table(SUBSCRIBER.spec())


def test_ksr_layout_and_kamailio_layout_never_share_a_table(sql_url: str) -> None:
    sep = "&" if "?" in sql_url else "?"
    old = open_store(f"{sql_url}{sep}layout=ksr")
    old.table(LOCATION_SPEC)  # an earlier ksr's location table
    old.close()
    with pytest.raises(SchemaMismatch, match=r"location: has ksr's own layout \(ksr_version 1\)"):
        open_store(sql_url).table(KAM_LOCATION_SPEC)
    # and the other way round: ksr's layout does not add its columns to Kamailio's table
    kam = open_store(sql_url)
    kam.table(SUBSCRIBER.spec())
    kam.close()
    from ksr.modules.auth_db.subscribers import SUBSCRIBER_SPEC

    with pytest.raises(SchemaMismatch, match="subscriber: is Kamailio's"):
        open_store(f"{sql_url}{sep}layout=ksr").table(SUBSCRIBER_SPEC)


def test_location_rows_round_trip(sql_url: str) -> None:
    """A contact stored and read back through Kamailio's columns keeps every field."""
    store = open_store(sql_url)
    for use_domain in (False, True):
        d = Domain("location", 3, lambda: store, use_domain)
        aor = "alice@example.com" if use_domain else "alice"
        c = Contact(
            aor=aor,
            contact="sip:alice@192.0.2.1:5062;transport=tcp",
            expires=round(time.time()) + 3600.25,
            q=500,
            callid="c1",
            cseq=7,
            flags=2,
            cflags=64,
            user_agent="ua",
            received="sip:198.51.100.1:40000;transport=tcp",
            socket="tcp:127.0.0.1:5060",
            path="<sip:p1>",
            ruid=f"r-{use_domain}",
            instance="<urn:uuid:1>",
            reg_id=1,
            methods=0x1F,
            server_id=3,
            conn_id=12,
            keepalive=1,
            last_modified=round(time.time()),
        )
        d.put(c)
        (back,) = d.get(aor)
        # SQLite keeps times as julian days (a double: milliseconds survive)
        assert back.expires == pytest.approx(c.expires, abs=1e-3)
        assert back.last_modified == pytest.approx(c.last_modified, abs=1e-3)
        back.expires, back.last_modified = c.expires, c.last_modified
        assert back == c
        plain = Contact(aor=aor, contact="sip:b@h", expires=0, ruid=f"p-{use_domain}")
        d.put(plain)
        got = {x.ruid: x for x in d.get(aor)}[plain.ruid]
        assert (got.q, got.methods, got.expires, got.received) == (-1, ALL_METHODS, 0.0, "")
        row = d.table().get(plain.ruid)
        assert row is not None
        assert row["domain"] == ("example.com" if use_domain else None)
        assert (row["q"], row["methods"], row["received"]) == (-0.001, None, None)
        assert row["username"] == "alice"
        d.remove(c)
        d.remove(plain)
    store.close()


def test_sqlite_times_are_julian_days_as_db_sqlite_writes_them(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/k.sqlite")
    t = store.table(LOCATION.spec(key="ruid"))
    t.put({"ruid": "r1", "username": "u", "contact": "sip:u@h", "expires": 1_800_000_000})
    raw = store.execute("SELECT expires FROM location", fetch=True)[0][0][0]  # type: ignore[attr-defined]
    assert raw == (1_800_000_000 - 0.5) / 86400.0 + 2440587.5
    assert t.get("r1")["expires"] == pytest.approx(1_800_000_000)  # type: ignore[index]


@pytest.mark.postgres
@needs_files
def test_rows_written_by_kamailios_tools_are_read() -> None:
    """Subscribers added with the SQL kamctl runs and a binding written as Kamailio writes it
    (local-time timestamps) are read by auth_db's and usrloc's code."""
    import psycopg

    with fresh_pg_database(kamailio_schema=True) as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES "
                "('alice', 'example.com', 'pw', md5('alice:example.com:pw'), "
                "md5('alice@example.com:example.com:pw'))"
            )
            c.execute(
                "INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, "
                "last_modified, methods) VALUES ('uloc-1', 'alice', 'sip:alice@192.0.2.1', "
                "'2030-01-02 03:04:05', -0.001, 'cid', 5, '2026-01-01 00:00:00', NULL)"
            )
        store = open_store(url)
        row = Subscribers(store).lookup("alice", None)
        assert row is not None

        assert row["ha1"] == hashlib.md5(b"alice:example.com:pw").hexdigest()
        assert row["ha1b"] == hashlib.md5(b"alice@example.com:example.com:pw").hexdigest()
        (c,) = Domain("location", 3, lambda: store).get("alice")
        assert c.expires == datetime(2030, 1, 2, 3, 4, 5).timestamp()  # local time
        assert (c.ruid, c.q, c.cseq, c.methods) == ("uloc-1", -1, 5, ALL_METHODS)
        store.close()


@pytest.mark.postgres
def test_usrloc_refuses_to_start_on_another_schema_version() -> None:
    with fresh_pg_database(kamailio_schema=False) as url:
        store = open_store(url)
        store.table(KAM_LOCATION_SPEC)
        store.execute("UPDATE version SET table_version = 8 WHERE table_name = 'location'")  # type: ignore[attr-defined]
        store.close()
        params = {"usrloc": {"db_url": url, "db_mode": 3}}
        with pytest.raises(ConfigError, match="table location: invalid version 8 .* expected 9"):
            server_with(["usrloc", "registrar"], params)


def test_dialog_ids_with_the_top_bit_fit_kamailios_integer_columns(sql_url: str) -> None:
    """A dialog id carrying server_id 200 in its top byte is stored as Kamailio stores its
    unsigned ids in the signed INTEGER column, and read back whole."""
    from ksr.modules.dialog.kamrows import KamDialogRows
    from ksr.modules.dialog.model import Dialog

    store = open_store(sql_url)
    rows = KamDialogRows(store, "dialog", "dialog_vars")
    dlg = Dialog(3, (200 << 24) | 5, "c-top", "sip:a@x", "sip:b@x", "sip:b@y", "", 0, 1.0)
    dlg.variables = {"k": "v"}
    rows.write(dlg)
    (back,) = KamDialogRows(store, "dialog", "dialog_vars").load()
    assert (back.h_entry, back.h_id, back.variables) == (3, dlg.h_id, {"k": "v"})
    rows.remove(dlg)
    assert KamDialogRows(store, "dialog", "dialog_vars").load() == []
    store.close()
