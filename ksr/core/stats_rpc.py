"""The ``stats.*`` RPC commands (Kamailio's names and reply shapes), answered for the whole
server: with worker processes the worker serving RPC gathers every worker's snapshot and merges
them by kind (ksr/core/stats_view.py), so a setting such as ``registrar:max_expires`` is not
added up N times. ``stats.snapshot`` is ksr's own: one worker's figures for that merge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .rpc import RpcError
from .rpc_merge import SUM
from .stats_view import SNAPSHOT_OF_RPC, SNAPSHOT_RPC, ServerStats, stats_view

if TYPE_CHECKING:
    from .server import Server
    from .stats import Stats


def _lines(view: ServerStats | Stats, specs: tuple[str, ...]) -> list[str]:
    if not specs:
        raise RpcError(500, "Not enough parameters")
    out: list[str] = []
    for spec in specs:
        out.extend(f"{g}:{n} = {v}" for g, n, v in view.select(spec))
    return out


def _fetch(view: ServerStats | Stats, specs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs or ("all",):
        for g, n, v in view.select(spec):
            out[f"{g}.{n}"] = str(v)
    return out


class StatsRpc:
    COMMANDS = (
        "stats.get_statistics",
        "stats.fetch",
        "stats.clear_statistics",
        "stats.reset_statistics",
        SNAPSHOT_RPC,
        SNAPSHOT_OF_RPC,
    )

    def __init__(self, server: Server) -> None:
        self.server = server

    def _merged(self) -> bool:
        h = self.server.handoff
        return h is not None and h.count > 1

    def register(self) -> None:
        add = self.server.rpc.add
        add(
            "stats.get_statistics",
            self._both(self.get_local, self.get_all),
            'Statistics as "group:name = value": all, group: or name.',
        )
        add(
            "stats.fetch",
            self._both(self.fetch_local, self.fetch_all),
            'Statistics as a map "group.name": "value".',
        )
        add(
            "stats.clear_statistics",
            self._both(self.clear_local, self.clear_all),
            "Return then reset.",
        )
        add(
            "stats.reset_statistics",
            self.reset,
            "Reset counters (gauges keep their value).",
            merge=SUM,  # run on every worker (ksr/core/cluster_rpc.py)
        )
        add(SNAPSHOT_RPC, self.snapshot, "This worker's statistics with their kinds (ksr).")
        add(
            SNAPSHOT_OF_RPC,
            self.snapshot_of,
            "What another worker's previous process counted, for its restart (ksr).",
        )

    def _both(
        self, local: Callable[..., Any], merged: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Any]:
        """A command that answers for the whole server (awaitable) with worker processes and
        for this process otherwise; ``.local`` serves the synchronous path (RpcRegistry)."""

        def command(*specs: str) -> Any:
            return merged(*specs) if self._merged() else local(*specs)

        command.local = local  # type: ignore[attr-defined]
        return command

    # -- this process --------------------------------------------------------------------------
    def get_local(self, *specs: str) -> list[str]:
        return _lines(self.server.stats, specs)

    def fetch_local(self, *specs: str) -> dict[str, str]:
        return _fetch(self.server.stats, specs)

    def clear_local(self, *specs: str) -> list[str]:
        out = self.get_local(*specs)
        self.reset(*specs)
        return out

    def reset(self, *specs: str) -> None:
        if not specs:
            raise RpcError(500, "Not enough parameters")
        for spec in specs:
            self.server.stats.reset(spec)

    def snapshot(self) -> dict[str, Any]:
        return stats_view(self.server).snapshot()

    def snapshot_of(self, worker: int, pid: int) -> dict[str, Any] | None:
        return stats_view(self.server).snapshot_of(int(worker), int(pid))

    # -- the whole server ----------------------------------------------------------------------
    async def get_all(self, *specs: str) -> list[str]:
        if not specs:
            raise RpcError(500, "Not enough parameters")
        return _lines(await stats_view(self.server).gather(), specs)

    async def fetch_all(self, *specs: str) -> dict[str, str]:
        return _fetch(await stats_view(self.server).gather(), specs)

    async def clear_all(self, *specs: str) -> list[str]:
        out = await self.get_all(*specs)
        # stats.reset_statistics runs on every worker (merge=SUM, ksr/core/cluster_rpc.py)
        result = self.server.rpc.call("stats.reset_statistics", list(specs))
        if hasattr(result, "__await__"):
            await result
        return out
