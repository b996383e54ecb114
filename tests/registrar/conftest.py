"""Backends for the registrar/usrloc/auth tests: SQLite in tmp, PostgreSQL and Redis on this
machine, each with a table prefix unique to the test so parallel runs never meet."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services


def __getattr__(name: str) -> str:
    # PG_URL / REDIS_URL, decided on first use (tests/services.py: the running servers, or
    # throwaway ones started for the session)
    if name == "PG_URL":
        return services.pg_url()
    if name == "REDIS_URL":
        return services.redis_url()
    raise AttributeError(name)


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10] + "_"


def _cleanup(url: str, prefix: str) -> None:
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(services.psycopg_url(url), autocommit=True) as c:
            rows = c.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE %s",
                (prefix + "%",),
            ).fetchall()
            for (name,) in rows:
                c.execute(f'DROP TABLE IF EXISTS "{name}"')
    elif url.startswith("redis"):
        services.drop_redis_keys(prefix, url)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A db_url for each backend (the test runs three times)."""
    yield from _url_for(request.param, tmp_path)


def _url_for(kind: str, tmp_path: Path) -> Iterator[str]:
    prefix = unique_prefix()
    if kind == "sqlite":
        yield f"sqlite://{tmp_path}/ksr.sqlite"
        return
    base = services.pg_url() if kind == "postgres" else services.redis_url()
    try:
        yield f"{base}?prefix={prefix}"
    finally:
        _cleanup(base, prefix)


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def shared_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A db_url on a server two ksr processes can share."""
    yield from _url_for(request.param, tmp_path)
