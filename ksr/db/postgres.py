"""PostgreSQL backend (psycopg 3, imported only when a postgres:// db_url is used)."""

from __future__ import annotations

import math
import os
import socket
from datetime import datetime
from typing import Any

from ksr.suspend.backend import Limits

from .sql import SqlStore


class PostgresStore(SqlStore):
    mark = "%s"
    dialect = "postgres"

    def __init__(
        self, url: str, prefix: str = "", layout: str = "kamailio", limits: Limits | None = None
    ) -> None:
        super().__init__(url, prefix, layout, limits)
        # libpq counts whole seconds; the call's own timeout (Backend) bounds it anyway
        self.connect_timeout = max(1, math.ceil(self.io.limits.timeout))

    # Kamailio's DATETIME columns are TIMESTAMP WITHOUT TIME ZONE holding local time
    def enc_time(self, t: float) -> Any:
        return datetime.fromtimestamp(t)

    def dec_time(self, v: Any) -> float:
        if isinstance(v, datetime):
            return v.timestamp()  # naive: read as local time, as Kamailio's mktime() does
        return datetime.fromisoformat(str(v)).timestamp()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout)

    def _is_disconnect(self, err: Exception, conn: Any) -> bool:
        import psycopg

        if isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        return bool(conn is not None and conn.closed)

    def _abort(self, conn: Any) -> None:
        # shut the socket down under libpq: the blocked thread gets an error at once
        dup = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()

    def _columns(self, table: str) -> list[str] | None:
        rows, _ = self.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ?",
            (table.lower(),),
            fetch=True,
        )
        return [r[0] for r in rows] or None

    def describe(self) -> str:
        return "postgres " + self.url.split("@")[-1]
