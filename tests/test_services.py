"""The throwaway PostgreSQL and Redis of tests/services.py start from the installed binaries on
a private port, serve, and leave nothing behind, whatever servers this run otherwise uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import services


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.postgres
def test_throwaway_postgres_serves_then_vanishes() -> None:
    import psycopg

    url = services._start_postgres()
    t = services._running.pop()
    try:
        assert url != services.DEFAULT_PG_URL
        with psycopg.connect(services.psycopg_url(url)) as c:
            assert c.execute("SELECT current_database(), current_user").fetchone() == (
                "test",
                "postgres",
            )
            c.execute("CREATE TABLE t (x int)")
        if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as an unprivileged account
            assert Path(f"/proc/{t.proc.pid}/status").read_text().count("\nUid:\t0") == 0
    finally:
        t.stop()
    assert _gone(t.proc.pid)
    assert not t.folder.exists()


@pytest.mark.redis
def test_throwaway_redis_serves_then_vanishes() -> None:
    import redis

    url = services._start_redis()
    t = services._running.pop()
    try:
        r = redis.Redis.from_url(url)
        r.set("k", "v")
        assert r.get("k") == b"v"
        assert url != services.DEFAULT_REDIS_URL
    finally:
        t.stop()
    assert _gone(t.proc.pid)
    assert not t.folder.exists()


def test_unknown_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSR_TEST_SERVICES", "sometimes")
    with pytest.raises(RuntimeError, match="auto, throwaway, system"):
        services.mode()
