"""``$shv``: variables shared by every message, and with worker processes by every worker."""

from __future__ import annotations

from typing import Any

from .replication import replicated


class SharedVars(dict[str, int | str]):
    """A dict whose item assignments replicate to the other worker processes (reads are plain
    dict reads)."""

    @replicated
    def __setitem__(self, key: str, value: int | str) -> None:
        dict.__setitem__(self, key, value)

    def replica_snapshot(self) -> Any:
        return dict(self)

    def replica_restore(self, state: Any) -> None:
        dict.clear(self)
        dict.update(self, state)
