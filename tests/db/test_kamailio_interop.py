"""One database, two servers: ksr and the real Kamailio 5.6 (Debian package) on Kamailio's own
schema (PostgreSQL, and SQLite when kamailio-sqlite-modules is installed), one after the other.
Subscribers are added with the SQL kamctl runs; phones (sipp) register with digest auth through
one server and are called through the other; a call ksr set up is ended through Kamailio."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ksr.db import Row, TableSpec, open_store
from ksr.db.kamailio import DIALOG, LOCATION
from ksr.rpc_client import call as rpc_call
from tests.db.kamailio_proc import available, running_kamailio
from tests.db.kamdb import (
    KAMAILIO_PG_SCHEMA,
    KAMAILIO_SQLITE_SCHEMA,
    fresh_pg_database,
    kamailio_sqlite_database,
)
from tests.registrar.procs import SCENARIO
from tests.support import free_port, ksr_process, run_sipp

UAC = Path(__file__).resolve().parents[1] / "sipp" / "uac_call.xml"  # ACK and BYE to the Contact

pytestmark = pytest.mark.sipp


@pytest.fixture(
    params=[
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not available("db_postgres")
                    or not (KAMAILIO_PG_SCHEMA / "standard-create.sql").exists(),
                    reason="Kamailio 5.6 with db_postgres and its schema files are not installed",
                ),
            ],
        ),
        pytest.param(
            "sqlite",
            marks=pytest.mark.skipif(
                not available("db_sqlite")
                or not (KAMAILIO_SQLITE_SCHEMA / "standard-create.sql").exists(),
                reason="kamailio-sqlite-modules (db_sqlite and its schema files) is not installed",
            ),
        ),
    ]
)
def kam_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database created from Kamailio's schema files, with subscribers added as kamctl does."""
    if request.param == "sqlite":
        url = kamailio_sqlite_database(tmp_path / "kamailio.sqlite")
        add_subscribers_as_kamctl(url)
        yield url
        return
    with fresh_pg_database(kamailio_schema=True) as url:
        add_subscribers_as_kamctl(url)
        yield url


DOMAIN = "127.0.0.1"
USERS = {"alice": "pw-a", "bob": "pw-b", "carol": "pw-c"}

SCRIPT = """
function ksr_request_route()
  if KSR.is_REGISTER() then
    if KSR.auth_db.auth_check(KSR.pv.get("$td"), "subscriber", 1) < 0 then
      KSR.auth.auth_challenge(KSR.pv.get("$td"), 0)
      KSR.x.exit()
    end
    KSR.registrar.save("location", 0)
    KSR.x.exit()
  end
  if KSR.siputils.has_totag() > 0 then
    KSR.tm.t_relay()
    KSR.x.exit()
  end
  if KSR.registrar.lookup("location") < 0 then
    KSR.sl.sl_send_reply(404, "Not Found")
    KSR.x.exit()
  end
  if KSR.is_INVITE() then
    KSR.dialog.dlg_manage()
  end
  KSR.tm.t_relay()
end
"""


def ksr_config(url: str) -> str:
    return (
        'loadmodule = ["sl", "tm", "rr", "siputils", "usrloc", "registrar", "auth", "auth_db",'
        ' "dialog", "htable", "jsonrpcs"]\n'
        f'[modparam.usrloc]\ndb_url = "{url}"\ndb_mode = 3\n'
        f'[modparam.auth_db]\ndb_url = "{url}"\n'
        f'[modparam.dialog]\ndb_url = "{url}"\ndb_mode = 1\n'
        f'[modparam.htable]\ndb_url = "{url}"\n'
        'htable = ["shared=>size=4;dbtable=htable;dbmode=1;"]\n'
    )


def add_subscribers_as_kamctl(url: str) -> None:
    """What ``kamctl add USER PASSWORD`` runs (realm = domain): md5 in SQL on PostgreSQL, the
    same hashes computed by the shell (md5sum) for SQLite."""
    rows = [
        (u, DOMAIN, pw, f"{u}:{DOMAIN}:{pw}", f"{u}@{DOMAIN}:{DOMAIN}:{pw}")
        for u, pw in USERS.items()
    ]
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite://")) as c:
            c.executemany(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b) "
                "VALUES (?, ?, ?, ?, ?)",
                [(u, d, pw, _md5(a), _md5(b)) for u, d, pw, a, b in rows],
            )
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        for row in rows:
            c.execute(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES "
                "(%s, %s, %s, md5(%s), md5(%s))",
                row,
            )


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def register(user: str, server_port: int, tmp: Path) -> int:
    """A sipp phone registers ``user`` (digest auth); returns the port of its contact."""
    port = free_port()
    csv = tmp / f"{user}.csv"
    csv.write_text(f"SEQUENTIAL\n{user};{DOMAIN};x\n")
    res = run_sipp(
        ["-sf", str(SCENARIO), "-inf", str(csv), f"127.0.0.1:{server_port}", "-i", "127.0.0.1"]
        + ["-p", str(port), "-m", "1", "-au", user, "-ap", USERS[user], "-recv_timeout", "5000"],
        timeout=30,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return port


def call(user: str, server_port: int, phone_port: int) -> None:
    """sipp's built-in UAC calls ``user`` through the server; a sipp UAS on the registered
    contact's port answers (INVITE, 100, 180, 200, ACK, BYE, 200)."""
    uas = subprocess.Popen(
        ["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(phone_port), "-m", "1"]
        + ["-nostdin", "-timeout", "30s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        res = run_sipp(
            ["-sf", str(UAC), "-s", user, f"127.0.0.1:{server_port}", "-i", "127.0.0.1"]
            + ["-p", str(free_port()), "-m", "1", "-recv_timeout", "5000"],
            timeout=30,
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        out, err = uas.communicate(timeout=20)
        assert uas.returncode == 0, out[-2000:] + err[-2000:]
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()


def _all(url: str, spec: TableSpec) -> list[Row]:
    store = open_store(url)
    try:
        return store.table(spec).all()
    finally:
        store.close()


def location_rows(url: str) -> dict[str, tuple[object, ...]]:
    """username -> (domain, contact, ruid, expires in the future, socket), read through ksr's
    reading of Kamailio's time format."""
    now = time.time()
    return {
        str(r["username"]): (
            r["domain"],
            r["contact"],
            r["ruid"],
            float(r["expires"] or 0) > now,
            r["socket"],
        )
        for r in _all(url, LOCATION.spec(key="ruid"))
    }


def test_ksr_and_kamailio_serve_the_same_database(tmp_path: Path, kam_db: str) -> None:
    url = kam_db
    script = tmp_path / "route.lua"
    script.write_text(SCRIPT)

    # 1. ksr: alice and bob register, alice's call to bob goes through; an htable item
    # set here is written to Kamailio's htable table when ksr stops (dbmode=1)
    with ksr_process(script, ksr_config(url)) as k:
        register("alice", k["port"], tmp_path)
        bob = register("bob", k["port"], tmp_path)
        call("bob", k["port"], bob)
        reply = rpc_call(
            k["rpc"],
            {"jsonrpc": "2.0", "method": "htable.seti", "params": ["shared", "n", 5], "id": 1},
        )
        assert "error" not in reply, reply
    rows = location_rows(url)
    assert set(rows) == {"alice", "bob"}
    assert rows["bob"][0] is None  # domain NULL: use_domain 0
    assert rows["bob"][1] == f"sip:bob@127.0.0.1:{bob}"
    assert rows["bob"][3] is True  # expires: local time, in the future

    # 2. Kamailio on the same database finds them, routes a call to bob, registers carol
    with running_kamailio(tmp_path, url) as kam:
        found = str(kam.rpc("ul.lookup", "location", "bob"))
        assert f"sip:bob@127.0.0.1:{bob}" in found, found
        assert str(rows["bob"][2]) in found  # the ruid ksr gave the binding
        assert "alice" in str(kam.rpc("ul.lookup", "location", "alice"))
        item = str(kam.rpc("htable.get", "shared", "n"))  # the item ksr wrote
        assert re.search(r"value:\s*5\b", item), item
        call("bob", kam.port, bob)
        carol = register("carol", kam.port, tmp_path)
        log = kam.log.read_text()
    assert "invalid version" not in log, log[-3000:]
    assert "ERROR" not in log, log[-3000:]
    rows = location_rows(url)
    assert set(rows) == {"alice", "bob", "carol"}
    assert rows["carol"][3] is True  # Kamailio's expires, read by ksr: in the future

    # 3. ksr again: finds the binding Kamailio saved, calls carol, refreshes her binding
    with ksr_process(script, ksr_config(url)) as k:
        call("carol", k["port"], carol)
        register("carol", k["port"], tmp_path)
    after = location_rows(url)
    assert set(after) == {"alice", "bob", "carol"}


def _poll(fn: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def dialog_rows(url: str) -> list[tuple[object, ...]]:
    return [
        (r["callid"], r["state"], r["hash_entry"], r["hash_id"]) for r in _all(url, DIALOG.spec())
    ]


def test_call_set_up_by_ksr_ends_through_kamailio(tmp_path: Path, kam_db: str) -> None:
    """ksr stores an answered call in Kamailio's dialog tables and dies; Kamailio, started on
    the same address and database, loads the dialog (dlg.list) and ends it on the BYE."""
    url = kam_db
    script = tmp_path / "route.lua"
    script.write_text(SCRIPT)
    long_call = tmp_path / "uac_long.xml"  # BYE 6 s after the ACK
    long_call.write_text(UAC.read_text().replace('milliseconds="100"', 'milliseconds="6000"'))
    with ksr_process(script, ksr_config(url)) as k:
        port = k["port"]
        bob = register("bob", port, tmp_path)
        uas = subprocess.Popen(
            ["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(bob), "-m", "1"]
            + ["-nostdin", "-timeout", "40s"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        uac = subprocess.Popen(
            ["sipp", "-sf", str(long_call), "-s", "bob", f"127.0.0.1:{port}"]
            + ["-i", "127.0.0.1", "-p", str(free_port()), "-m", "1", "-nostdin"]
            + ["-timeout", "40s", "-recv_timeout", "20000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            rows = _poll(lambda: [r for r in dialog_rows(url) if r[1] == 4], "the confirmed dialog")
            k["proc"].kill()  # no goodbye: the rows stay as they were
            k["proc"].wait()
            ((callid, _, h_entry, h_id),) = rows  # type: ignore[misc]
            with running_kamailio(tmp_path, url, port=port) as kam:
                listed = str(kam.rpc("dlg.list"))
                assert str(callid) in listed, listed + kam.log.read_text()[-3000:]
                assert f"h_entry: {h_entry}" in listed, listed
                out, err = uac.communicate(timeout=40)
                assert uac.returncode == 0, out[-2000:] + err[-2000:]
                out, err = uas.communicate(timeout=20)
                assert uas.returncode == 0, out[-2000:] + err[-2000:]
                # Kamailio ended the dialog on the BYE and removed its rows
                _poll(lambda: not dialog_rows(url), "the dialog rows to go")
                log = kam.log.read_text()
            assert "ERROR" not in log, log[-3000:]
        finally:
            for p in (uac, uas):
                if p.poll() is None:
                    p.kill()
                    p.wait()
