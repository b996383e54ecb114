"""SQLite backend: a local file, no server (the embedded default)."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from ksr.suspend.backend import Limits, Slot

from .base import Kind
from .sql import SqlStore

# Kamailio's db_sqlite keeps DATETIME columns as a julian day number (REAL), half a second early
_UNIX_EPOCH_JD = 2440587.5


class SqliteStore(SqlStore):
    dialect = "sqlite"
    types: dict[Kind, str] = {"str": "TEXT", "int": "INTEGER", "float": "REAL", "datetime": "REAL"}

    def __init__(
        self, path: str, prefix: str = "", layout: str = "kamailio", limits: Limits | None = None
    ) -> None:
        self.path = path
        limits = limits or Limits(offload=False)
        if path == ":memory:" and limits.offload:  # one database per connection: one thread
            limits = dataclasses.replace(limits, offload=False)
        super().__init__(f"sqlite://{path}", prefix, layout, limits)

    def enc_time(self, t: float) -> Any:
        return (t - 0.5) / 86400.0 + _UNIX_EPOCH_JD

    def dec_time(self, v: Any) -> float:
        if isinstance(v, int | float):
            # a double holds a julian day to ~50 us: keep milliseconds
            return round(86400.0 * (float(v) - _UNIX_EPOCH_JD) + 0.5, 3)
        # text, e.g. a column default '2030-05-28 21:32:15': local time
        return datetime.fromisoformat(str(v)).timestamp()

    def _connect(self, slot: Slot) -> Any:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self.io.limits.timeout,  # waiting for another process's write lock
        )
        # WAL + NORMAL: a committed statement survives a crash of this process (not power loss)
        # and other processes may read while one writes.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _abort(self, conn: Any) -> None:
        conn.interrupt()

    def _is_disconnect(self, err: Exception, conn: Any) -> bool:
        # "database is locked" after the busy timeout, or the file vanished: retry once afresh.
        return isinstance(err, sqlite3.OperationalError) and (
            "locked" in str(err) or "unable to open" in str(err) or "disk I/O" in str(err)
        )

    def _columns(self, table: str) -> list[str] | None:
        rows, _ = self.execute(f"PRAGMA table_info({table})", fetch=True)
        return [r[1] for r in rows] or None

    def describe(self) -> str:
        return f"sqlite {self.path}"
