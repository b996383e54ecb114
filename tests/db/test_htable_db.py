"""htable tables kept in Kamailio's htable table: loaded at start-up (strings, integers, arrays,
expiry), written back at stop with dbmode=1, reloaded by htable.reload."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksr.core.config import ConfigError
from ksr.db import open_store
from ksr.db.kamailio import HTABLE
from ksr.modules.htable.db import SPEC
from tests.db.kamdb import pg_url
from tests.kemi.scriptkit import server_with
from tests.registrar.conftest import _cleanup, unique_prefix


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/ht.sqlite"
        return
    prefix, server = unique_prefix(), pg_url()
    try:
        yield f"{server}?prefix={prefix}"
    finally:
        _cleanup(server, prefix)


def _rows(url: str) -> list[tuple[object, ...]]:
    store = open_store(url)
    rows = store.table(SPEC).all()
    store.close()
    return sorted(
        (r["key_name"], r["key_type"], r["value_type"], r["key_value"], r["expires"]) for r in rows
    )


def test_load_save_reload(url: str) -> None:
    now = int(time.time())
    store = open_store(url)
    t = store.table(HTABLE.spec())
    for name, ktype, vtype, value, expires in [
        ("plain", 0, 0, "text", 0),
        ("count", 0, 1, "42", 0),
        ("list", 1, 0, "a", 0),
        ("list", 1, 0, "b", 0),
        ("gone", 0, 0, "x", now - 10),
        ("soon", 0, 1, "7", now + 100),
        ("bad", 0, 1, "seven", 0),
    ]:
        t.insert(
            {
                "key_name": name,
                "key_type": ktype,
                "value_type": vtype,
                "key_value": value,
                "expires": expires,
            }
        )
    store.close()
    s = server_with(
        ["htable"],
        {"htable": {"db_url": url, "htable": ["ht=>size=4;dbtable=htable;dbmode=1;"]}},
    )
    ht = s.modules["htable"].tables["ht"]
    items = {k: it.value for k, it in ht.live_items()}
    assert items == {
        "plain": "text",
        "count": 42,
        "list[0]": "a",
        "list[1]": "b",
        "list::size": 2,
        "soon": 7,
    }
    assert 90 <= (ht.remaining("soon") or 0) <= 100
    ht.set("new", "v")
    ht.delete("plain")
    s.modules["htable"].stop()
    rows = _rows(url)
    assert ("new", 0, 0, "v", 0) in rows
    assert ("count", 0, 1, "42", 0) in rows
    assert not [r for r in rows if r[0] == "plain"]
    (soon,) = [r for r in rows if r[0] == "soon"]
    assert abs(int(soon[4]) - (now + 100)) <= 2  # type: ignore[call-overload]
    # a row added behind ksr's back shows after htable.reload
    store = open_store(url)
    store.table(SPEC).insert(  # type: ignore[attr-defined]
        {"key_name": "late", "key_type": 0, "value_type": 0, "key_value": "x", "expires": 0}
    )
    store.close()
    assert s.rpc.call("htable.reload", ["ht"]) is None
    assert ht.get("late") == "x"
    assert ht.get("plain") is None


def test_dbtable_without_db_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="db_url is not set"):
        server_with(["htable"], {"htable": {"htable": ["ht=>dbtable=htable;"]}})


def test_wrong_htable_version_stops_start_up(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/v.sqlite"
    store = open_store(url)
    store.table(SPEC)
    store.execute("UPDATE version SET table_version = 1 WHERE table_name = 'htable'")  # type: ignore[attr-defined]
    store.close()
    with pytest.raises(ConfigError, match="htable: invalid version 1 .* expected 2"):
        server_with(["htable"], {"htable": {"db_url": url, "htable": ["ht=>dbtable=htable;"]}})
