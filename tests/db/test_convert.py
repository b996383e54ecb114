"""``ksr db convert``: tables an earlier ksr wrote in its own layout move into Kamailio's
tables (old ones kept as <name>_ksr); ksr's modules then read them."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksr.db import open_store
from ksr.db.kamailio import ADDRESS
from ksr.db_cli import convert
from ksr.modules.auth_db.subscribers import Subscribers
from ksr.modules.dialog.kamrows import KamDialogRows
from ksr.modules.dialog.model import Dialog
from ksr.modules.dialog.store import DialogStore
from ksr.modules.permissions import ADDRESS_SPEC
from ksr.modules.usrloc.contact import Contact
from ksr.modules.usrloc.domain import Domain
from ksr.sip.dialog_state import DlgState
from tests.db.kamdb import pg_url
from tests.registrar.conftest import _cleanup, unique_prefix

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/old.sqlite"
        return
    prefix, server = unique_prefix(), pg_url()
    try:
        yield f"{server}?prefix={prefix}"
    finally:
        _cleanup(server, prefix)


def _with(url: str, layout: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}layout={layout}"


def test_convert_ksr_tables(url: str) -> None:
    old = open_store(_with(url, "ksr"))
    Subscribers(old).add("alice", "example.com", "pw", store_password=False)
    exp = time.time() + 600
    Domain("location", 3, lambda: old).put(
        Contact(aor="alice", contact="sip:alice@192.0.2.1", expires=exp, ruid="r1", q=500)
    )
    old.table(ADDRESS_SPEC).put(
        {"id": 1, "grp": 1, "ip_addr": "10.0.0.0", "mask": 8, "port": 0, "tag": "lan"}
    )
    dlg = Dialog(7, 9, "call-1", "sip:a@x", "sip:b@x", "sip:b@y", "192.0.2.1", 5060, 1.0)
    dlg.state = DlgState.CONFIRMED
    dlg.variables = {"account": "a1"}
    DialogStore(old, 1).changed(dlg)
    old.close()

    said: list[str] = []
    assert convert(url, said.append) == 4
    assert len(said) == 4
    new = open_store(url)  # Kamailio's layout, the default
    row = Subscribers(new).lookup("alice", "example.com")
    assert row is not None
    assert row["password"] is None
    assert row["ha1"] == hashlib.md5(b"alice:example.com:pw").hexdigest()
    assert row["ha1b"] == hashlib.md5(b"alice@example.com:example.com:pw").hexdigest()
    (c,) = Domain("location", 3, lambda: new).get("alice")
    assert (c.ruid, c.contact, c.q) == ("r1", "sip:alice@192.0.2.1", 500)
    assert c.expires == pytest.approx(exp, abs=1e-3)
    (a,) = new.table(ADDRESS.spec()).all()
    assert (a["ip_addr"], a["mask"], a["tag"]) == ("10.0.0.0", 8, "lan")
    (d,) = KamDialogRows(new, "dialog", "dialog_vars").load()
    assert (d.callid, d.h_entry, d.h_id, d.variables) == ("call-1", 7, 9, {"account": "a1"})
    # the old tables stay, renamed; a second run finds nothing to do
    assert new.columns(new.prefix + "location_ksr") is not None  # type: ignore[attr-defined]
    new.close()
    assert convert(url, said.append) == 0
    assert said[-1] == "no table of ksr's own layout found"


def test_cli_refuses_redis() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ksr", "db", "convert", "redis://127.0.0.1:6379/0"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 1
    assert "needs an SQL db_url" in out.stderr
