"""Core RPC commands: core.*, system.* (Kamailio's names and reply shapes); stats.* are in
ksr/core/stats_rpc.py."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from .rpc import RpcError, rpc

if TYPE_CHECKING:
    from .server import Server


def _ctime(t: float) -> str:
    """C's ctime() without the newline (``Thu Nov  6 16:09:51 2026``), as Kamailio prints."""
    return time.ctime(t)


def processes(server: Server) -> list[tuple[int, str]]:
    """(pid, description) of every ksr process; with workers, read from the supervisor's
    children in /proc (the worker index is the position in that list)."""
    socks = ",".join(str(x) for x in server.listeners)
    sup = os.environ.get("KSR_SUPERVISOR_PID", "")
    if sup.isdigit() and server.handoff is not None:  # each worker wrote its pid file
        out = [(int(sup), "main process - attendant (worker supervisor)")]
        for i, pid in enumerate(server.handoff.worker_pids()):
            if pid and os.path.exists(f"/proc/{pid}"):
                out.append((pid, f"sip receiver child={i} sock={socks}"))
        return out
    if sup.isdigit():
        try:
            with open(f"/proc/{sup}/task/{sup}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            kids = [os.getpid()]
        out = [(int(sup), "main process - attendant (worker supervisor)")]
        out += [(pid, f"sip receiver child={i} sock={socks}") for i, pid in enumerate(kids)]
        return out
    return [(os.getpid(), f"main process - sip receiver child=0 sock={socks}")]


class CoreRpc:
    def __init__(self, server: Server) -> None:
        self.server = server
        from .stats_rpc import StatsRpc

        StatsRpc(server).register()

    @rpc("core.uptime")
    def uptime(self) -> dict[str, Any]:
        """Current time, start time and seconds since start."""
        now = time.time()
        return {
            "now": _ctime(now),
            "up_since": _ctime(self.server.started),
            "uptime": int(now - self.server.started),
        }

    @rpc("core.version")
    def version(self) -> str:
        """Server version string."""
        from .server import VERSION

        return f"ksr {VERSION} (python)"

    @rpc("core.ps")
    def ps(self) -> list[Any]:
        """Processes: pid, description, pid, description... (Kamailio's flat list)."""
        out: list[Any] = []
        for pid, desc in processes(self.server):
            out += [pid, desc]
        return out

    @rpc("core.psx")
    def psx(self) -> list[dict[str, Any]]:
        """Processes as a list of {IDX, PID, DSC}."""
        return [
            {"IDX": i, "PID": pid, "DSC": desc}
            for i, (pid, desc) in enumerate(processes(self.server))
        ]

    @rpc("core.shmmem")
    def shmmem(self) -> dict[str, int]:
        """Memory figures (ksr: this process's resident memory, see the shmem:* statistics)."""
        vals = dict((n, v) for _, n, v in self.server.stats.select("shmem:"))
        return {
            k: vals.get(n, 0)
            for k, n in (
                ("total", "total_size"),
                ("free", "free_size"),
                ("used", "used_size"),
                ("real_used", "real_used_size"),
                ("max_used", "max_used_size"),
                ("fragments", "fragments"),
            )
        }

    @rpc("core.echo")
    def echo(self, *args: Any) -> list[Any]:
        """Return the parameters."""
        return list(args)

    @rpc("system.listMethods")
    def list_methods(self) -> list[str]:
        """All RPC methods."""
        return sorted(self.server.rpc.commands)

    @rpc("system.methodHelp")
    def method_help(self, name: str) -> str:
        """Documentation of a method."""
        cmd = self.server.rpc.commands.get(name)
        if cmd is None:
            raise RpcError(500, "Method Not Found")
        return cmd.doc
