"""A fresh PostgreSQL database per test, optionally filled from Kamailio's own schema files
(package kamailio-postgres-modules), dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def pg_url() -> str:
    """The test PostgreSQL server (tests/services.py decides where it is, once it exists)."""
    try:
        from tests.services import pg_url as services_pg_url  # type: ignore[import-not-found]
    except ImportError:
        from tests.registrar.conftest import PG_URL

        return PG_URL
    return str(services_pg_url())


KAMAILIO_PG_SCHEMA = Path("/usr/share/kamailio/postgres")
KAMAILIO_SQLITE_SCHEMA = Path("/usr/share/kamailio/db_sqlite")  # kamailio-sqlite-modules
# the files kamdbctl runs for the tables ksr uses (standard first: it creates `version`)
KAMAILIO_FILES = ("standard", "auth_db", "usrloc", "dialog", "permissions", "htable", "acc")


def _with_db(url: str, db: str) -> str:
    parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
    return urlunsplit(parts._replace(path="/" + db))


def kamailio_sql(files: tuple[str, ...] = KAMAILIO_FILES, folder: Path = KAMAILIO_PG_SCHEMA) -> str:
    return "\n".join((folder / f"{f}-create.sql").read_text() for f in files)


def kamailio_sqlite_database(path: Path) -> str:
    """An SQLite file made from Kamailio's SQLite schema files; its sqlite:/// URL."""
    import sqlite3

    with sqlite3.connect(path) as c:
        c.executescript(kamailio_sql(folder=KAMAILIO_SQLITE_SCHEMA))
    return f"sqlite://{path}"


@contextmanager
def fresh_pg_database(kamailio_schema: bool) -> Iterator[str]:
    """A postgresql:// URL of a new database ``ksr_kdb_<random>`` (with Kamailio's tables
    created from its SQL files when ``kamailio_schema``), dropped on exit."""
    import psycopg

    name = "ksr_kdb_" + uuid.uuid4().hex[:12]
    server = pg_url()
    admin = _with_db(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = _with_db(server, name)
    try:
        if kamailio_schema:
            with psycopg.connect(url, autocommit=True) as c:
                c.execute(kamailio_sql())  # type: ignore[arg-type]
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
