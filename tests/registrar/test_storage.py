"""ksr.db against the real backends: the generic table API, migrations, reconnection."""

from __future__ import annotations

import pytest

from ksr.db import DbError, DbUnavailable, TableSpec, open_store, parse_db_url
from tests import services

SPEC = TableSpec(
    "items",
    key="id",
    fields=(("id", "str"), ("owner", "str"), ("n", "int"), ("until", "float")),
    indexes=("owner",),
    ordered=("until",),
)


def test_table_api(db_url: str) -> None:
    store = open_store(db_url)
    t = store.table(SPEC)
    t.put({"id": "a", "owner": "alice", "n": 1, "until": 10.5})
    t.put({"id": "b", "owner": "alice", "n": 2, "until": 20.0})
    t.put({"id": "c", "owner": "bob", "n": 3, "until": None})
    assert t.get("a") == {"id": "a", "owner": "alice", "n": 1, "until": 10.5}
    assert t.get("zz") is None
    assert sorted(r["id"] for r in t.find("owner", "alice")) == ["a", "b"]
    assert [r["id"] for r in t.find_below("until", 15)] == ["a"]
    t.put({"id": "a", "owner": "bob", "n": 7, "until": 30})  # replace moves the index entry
    assert sorted(r["id"] for r in t.find("owner", "bob")) == ["a", "c"]
    assert [r["id"] for r in t.find("owner", "alice")] == ["b"]
    assert t.find_below("until", 15) == []
    assert t.count() == 3
    assert t.delete("a") is True
    assert t.delete("a") is False
    assert t.delete_where("owner", "alice") == 1
    assert [r["id"] for r in t.all()] == ["c"]
    assert t.clear() == 1
    assert t.count() == 0
    store.close()


def test_data_survives_reopen_and_schema_migrates(db_url: str) -> None:
    s1 = open_store(db_url)
    s1.table(SPEC).put({"id": "x", "owner": "o", "n": 5})
    s1.close()
    v2 = TableSpec(
        "items",
        key="id",
        fields=(*SPEC.fields, ("extra", "str")),
        indexes=("owner", "extra"),
        ordered=("until",),
        version=2,
    )
    s2 = open_store(db_url)
    t2 = s2.table(v2)
    assert t2.get("x") == {"id": "x", "owner": "o", "n": 5, "until": None, "extra": None}
    t2.put({"id": "y", "owner": "o", "extra": "e"})
    assert [r["id"] for r in t2.find("extra", "e")] == ["y"]
    s2.close()
    with pytest.raises(DbError, match="newer"):
        open_store(db_url).table(SPEC)  # an older ksr refuses a newer schema


def test_unreachable_backends_raise_unavailable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for url in ("postgres://postgres@127.0.0.1:1/test", "redis://127.0.0.1:1/0"):
        with pytest.raises(DbUnavailable):
            open_store(url).table(SPEC)


@pytest.mark.postgres
def test_postgres_reconnects_after_connection_killed() -> None:
    import psycopg

    from tests.registrar.conftest import _cleanup, unique_prefix

    pg_url = services.pg_url()
    prefix = unique_prefix()
    store = open_store(f"{pg_url}?prefix={prefix}")
    try:
        t = store.table(SPEC)
        t.put({"id": "a", "owner": "o"})
        pids = [s.conn.pgconn.backend_pid for s in store.io.slots() if s.conn is not None]
        assert pids
        with psycopg.connect(services.psycopg_url(pg_url), autocommit=True) as c:
            for pid in pids:
                c.execute("SELECT pg_terminate_backend(%s)", (pid,))
        t.put({"id": "b", "owner": "o"})  # the dead connection is replaced transparently
        assert len(t.find("owner", "o")) == 2
    finally:
        store.close()
        _cleanup(pg_url, prefix)


@pytest.mark.redis
def test_redis_reconnects_and_reloads_its_scripts() -> None:
    import redis

    from tests.registrar.conftest import _cleanup, unique_prefix

    redis_url = services.redis_url()
    prefix = unique_prefix()
    store = open_store(f"{redis_url}?prefix={prefix}")
    admin = redis.Redis.from_url(redis_url)
    try:
        t = store.table(SPEC)
        t.put({"id": "a", "owner": "o", "until": 5.0})
        admin.script_flush()  # a restarted Redis has forgotten the scripts
        t.put({"id": "b", "owner": "o"})
        ids = [s.conn.client_id() for s in store.io.slots() if s.conn is not None]  # type: ignore[attr-defined]
        assert ids
        for client_id in ids:
            assert admin.client_kill_filter(_id=client_id) == 1
        t.put({"id": "c", "owner": "p"})  # the killed connection is replaced transparently
        assert [r["id"] for r in t.find("owner", "o")] == ["a", "b"]
        assert [r["id"] for r in t.find_below("until", 10)] == ["a"]
        assert t.delete("b") is True
        assert [r["id"] for r in t.all()] == ["a", "c"]
        assert sorted(k.decode() for k in admin.keys(prefix + "*")) == [
            f"{prefix}items:all",
            f"{prefix}items:i:owner:o",
            f"{prefix}items:i:owner:p",
            f"{prefix}items:r:a",
            f"{prefix}items:r:c",
            f"{prefix}items:z:until",
            f"{prefix}ksr_version",
        ]
    finally:
        store.close()
        admin.close()
        _cleanup(redis_url, prefix)


def test_url_parsing() -> None:
    assert parse_db_url("sqlite:///var/x.db").target == "/var/x.db"
    assert parse_db_url("sqlite://./ksr.sqlite").target == "./ksr.sqlite"
    u = parse_db_url("postgres://u@h:5432/db?prefix=p_&sslmode=disable")
    assert (u.scheme, u.prefix, u.target) == (
        "postgres",
        "p_",
        "postgresql://u@h:5432/db?sslmode=disable",
    )
    with pytest.raises(DbError):
        parse_db_url("mysql://x/y")
    with pytest.raises(DbError):
        parse_db_url("redis://h/0?prefix=a;drop")
    # PostgreSQL: the event loop drives the connections unless driver=thread is asked for
    assert parse_db_url("postgres://u@h/db").limits.driver == "loop"
    assert parse_db_url("postgres://u@h/db?driver=thread").limits.driver == "thread"
    assert parse_db_url("redis://h/0").limits.driver == "thread"
    with pytest.raises(DbError, match="PostgreSQL"):
        parse_db_url("redis://h/0?driver=loop")
    with pytest.raises(DbError, match="loop or thread"):
        parse_db_url("postgres://u@h/db?driver=fast")
