"""Core RPC commands: core.*, system.*, stats.* (Kamailio's names and reply shapes)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from .rpc import RpcError, rpc

if TYPE_CHECKING:
    from .server import Server


def _ctime(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t)).replace(" 0", "  ", 0)


class CoreRpc:
    def __init__(self, server: Server) -> None:
        self.server = server

    @rpc("core.uptime")
    def uptime(self) -> dict[str, Any]:
        """Current time, start time and seconds since start."""
        now = time.time()
        return {"now": _ctime(now), "up_since": _ctime(self.server.started), "uptime": int(now - self.server.started)}

    @rpc("core.version")
    def version(self) -> str:
        """Server version string."""
        from .server import VERSION

        return f"ksr {VERSION} (python)"

    @rpc("core.ps")
    def ps(self) -> list[dict[str, Any]]:
        """Processes of this server."""
        s = self.server
        desc = "udp receiver child=0 sock=" + ",".join(str(x) for x in s.listeners)
        return [{"IDX": 0, "PID": os.getpid(), "DSC": desc}]

    @rpc("core.psx")
    def psx(self) -> list[dict[str, Any]]:
        """Processes with more detail."""
        return [{"IDX": p["IDX"], "PID": p["PID"], "DSC": p["DSC"], "RANK": 1} for p in self.ps()]

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

    @rpc("stats.get_statistics")
    def get_statistics(self, *specs: str) -> list[str]:
        """Statistics as "group:name = value": all, group: or name."""
        if not specs:
            raise RpcError(500, "Not enough parameters")
        out: list[str] = []
        for spec in specs:
            out.extend(f"{g}:{n} = {v}" for g, n, v in self.server.stats.select(spec))
        return out

    @rpc("stats.fetch")
    def fetch(self, *specs: str) -> dict[str, str]:
        """Statistics as a map "group.name": "value"."""
        out: dict[str, str] = {}
        for spec in specs or ("all",):
            for g, n, v in self.server.stats.select(spec):
                out[f"{g}.{n}"] = str(v)
        return out

    @rpc("stats.reset_statistics")
    def reset_statistics(self, *specs: str) -> None:
        """Reset counters (gauges keep their value)."""
        if not specs:
            raise RpcError(500, "Not enough parameters")
        for spec in specs:
            self.server.stats.reset(spec)

    @rpc("stats.clear_statistics")
    def clear_statistics(self, *specs: str) -> list[str]:
        """Return then reset."""
        out = self.get_statistics(*specs)
        self.reset_statistics(*specs)
        return out
