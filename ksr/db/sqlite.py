"""SQLite backend: a local file, no server (the embedded default)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from .base import Kind
from .sql import SqlStore


class SqliteStore(SqlStore):
    types: dict[Kind, str] = {"str": "TEXT", "int": "INTEGER", "float": "REAL"}

    def __init__(self, path: str, prefix: str = "") -> None:
        super().__init__(f"sqlite://{path}", prefix)
        self.path = path

    def _connect(self) -> Any:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=5.0
        )
        # WAL + NORMAL: a committed statement survives a crash of this process (not power loss)
        # and other processes may read while one writes.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _is_disconnect(self, err: Exception) -> bool:
        # "database is locked" after the busy timeout, or the file vanished: retry once afresh.
        return isinstance(err, sqlite3.OperationalError) and (
            "locked" in str(err) or "unable to open" in str(err) or "disk I/O" in str(err)
        )

    def _columns(self, table: str) -> list[str] | None:
        rows, _ = self.execute(f"PRAGMA table_info({table})", fetch=True)
        return [r[1] for r in rows] or None

    def describe(self) -> str:
        return f"sqlite {self.path}"
