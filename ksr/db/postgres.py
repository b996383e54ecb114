"""PostgreSQL backend (psycopg 3, imported only when a postgres:// db_url is used)."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from datetime import datetime
from typing import Any

from ksr.suspend.backend import Limits, Slot
from ksr.suspend.locks import KeyedLock

from .base import DbUnavailable, Value
from .sql import SqlStore

log = logging.getLogger("ksr.db")


class PostgresStore(SqlStore):
    mark = "%s"
    dialect = "postgres"

    def __init__(
        self, url: str, prefix: str = "", layout: str = "kamailio", limits: Limits | None = None
    ) -> None:
        # the event loop drives the connections unless told otherwise (ksr/db/pg_loop.py)
        limits = limits or Limits(driver="loop")
        super().__init__(url, prefix, layout, limits)
        # libpq counts whole seconds; the call's own timeout (Backend) bounds it anyway
        self.connect_timeout = max(1, math.ceil(self.io.limits.timeout))
        self._connecting = KeyedLock()  # one connect per shared connection (driver "loop")

    def execute(
        self, sql: str, params: tuple[Value, ...] = (), fetch: bool = False
    ) -> tuple[list[tuple[Any, ...]], int]:
        if self.io.limits.driver != "loop":
            return super().execute(sql, params, fetch)
        sql = sql.replace("?", self.mark)
        rows, n = self.io.run(lambda slot: self._execute_in_loop(slot, sql, params))
        return (rows if fetch else []), n

    def _execute_in_loop(
        self, slot: Slot, sql: str, params: tuple[Value, ...]
    ) -> tuple[list[tuple[Any, ...]], int]:
        """On a connection the event loop drives (ksr/db/pg_pipe.py), shared with other
        routes; made or remade here."""
        from . import pg_pipe

        deadline = time.monotonic() + self.io.limits.timeout
        for attempt in (1, 2):
            if slot.conn is None or slot.conn.closed:
                self._reconnect(slot, deadline)
            try:
                return slot.conn.execute(sql, params, deadline)
            except pg_pipe.Lost as err:
                # a connection found broken before the statement left is made again at once
                # (a server that restarted between two calls is not even noticed)
                if err.sent or attempt == 2:
                    raise
                log.warning("%s: connection lost, reconnecting", self.describe())
        raise AssertionError("unreachable")

    def _reconnect(self, slot: Slot, deadline: float) -> None:
        """A new connection for ``slot``; the routes sharing it meanwhile wait for this one."""
        from . import pg_pipe

        key = str(id(slot))
        locked = self._connecting.acquire(key)
        try:
            if slot.conn is not None and not slot.conn.closed:
                return  # another route connected it while this one waited
            slot.conn = pg_pipe.connect(self.url, self.connect_timeout, deadline, self.describe())
        except DbUnavailable:
            raise
        except Exception as err:
            raise DbUnavailable(f"{self.describe()}: cannot connect: {err}") from err
        finally:
            if locked:
                self._connecting.release(key)

    # Kamailio's DATETIME columns are TIMESTAMP WITHOUT TIME ZONE holding local time
    def enc_time(self, t: float) -> Any:
        return datetime.fromtimestamp(t)

    def dec_time(self, v: Any) -> float:
        if isinstance(v, datetime):
            return v.timestamp()  # naive: read as local time, as Kamailio's mktime() does
        return datetime.fromisoformat(str(v)).timestamp()

    def _connect(self, slot: Slot) -> Any:
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
