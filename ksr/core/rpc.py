"""The RPC registry that every module adds commands to (Kamailio's method names)."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .rpc_merge import POLICIES

_MARK = "__ksr_rpc__"
_MERGE = "__ksr_rpc_merge__"

F = TypeVar("F", bound=Callable[..., Any])  # a decorated method keeps its own signature
SUN_PATH_MAX = 107  # bytes in a unix socket address


class RpcError(Exception):
    """A fault returned to the RPC client: JSON-RPC ``error`` with code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def rpc(name: str, merge: str = "") -> Callable[[F], F]:
    """Mark a module method as the RPC command ``name`` (e.g. ``"ul.dump"``).

    The method receives the positional params as strings/numbers as sent by the client.
    ``merge`` (ksr/core/rpc_merge.py: SUM, JOIN, FIRST): with worker processes the
    command answers for all workers, their answers merged so; without it, it answers for the
    worker that received it (state kept per call, or shared by every worker)."""
    if merge and merge not in POLICIES:
        raise ValueError(f"RPC {name}: unknown merge policy {merge!r}")

    def mark(fn: F) -> F:
        names: list[str] = getattr(fn, _MARK, [])
        names.append(name)
        setattr(fn, _MARK, names)
        if merge:
            policies: dict[str, str] = getattr(fn, _MERGE, {})
            policies[name] = merge
            setattr(fn, _MERGE, policies)
        return fn

    return mark


@dataclass(slots=True)
class RpcCommand:
    name: str
    fn: Callable[..., Any]  # runs in this worker
    doc: str
    merge: str = ""  # rpc_merge policy over worker processes ("" = this worker only)
    cluster: Callable[..., Any] | None = None  # asks every worker (set by cluster_rpc)


class RpcRegistry:
    def __init__(self) -> None:
        self.commands: dict[str, RpcCommand] = {}
        # with worker processes: apply what the other workers changed before answering
        self.before: Callable[[], None] | None = None

    def add(self, name: str, fn: Callable[..., Any], doc: str = "", merge: str = "") -> None:
        if name in self.commands:
            raise ValueError(f"RPC command {name} registered twice")
        self.commands[name] = RpcCommand(name, fn, doc or (inspect.getdoc(fn) or ""), merge)

    def add_object(self, obj: Any) -> None:
        for attr in dir(type(obj)):
            raw = getattr(type(obj), attr, None)
            policies = getattr(raw, _MERGE, {})
            for name in getattr(raw, _MARK, ()):
                self.add(name, getattr(obj, attr), merge=policies.get(name, ""))

    def call(
        self, method: str, params: list[Any] | dict[str, Any] | None, local: bool = False
    ) -> Any:
        """Run a command. Named params are taken in the order given, as Kamailio does (only
        the order of the values matters, not their names). May return an awaitable for
        ``async def`` commands: ``handle`` refuses those, ``ahandle`` awaits them. ``local``:
        a command merged over all worker processes (ksr/core/cluster_rpc.py) runs for this
        worker only."""
        cmd = self.commands.get(method)
        if cmd is None:
            raise RpcError(500, "Method Not Found")
        if isinstance(params, dict):
            args = list(params.values())
        elif isinstance(params, list):
            args = params
        elif params is None:
            args = []
        else:
            args = [params]
        # a command may carry its own form for this worker alone (``fn.local``, stats.*)
        here = getattr(cmd.fn, "local", cmd.fn)
        try:
            inspect.signature(here).bind(*args)
        except TypeError as err:
            raise RpcError(500, f"Invalid Parameters ({err})") from None
        if self.before is not None:
            self.before()
        if local:
            return here(*args)
        if cmd.cluster is not None:
            return cmd.cluster(*args)
        return cmd.fn(*args)

    def handle(self, request: Any) -> dict[str, Any]:
        """Answer one JSON-RPC 2.0 request object (already decoded), synchronously."""
        rid, reply = self._start(request)
        if reply is not None:
            return reply
        try:
            # a command merged over worker processes answers for this worker alone here
            result = self.call(request["method"], request.get("params"), local=True)
            if inspect.isawaitable(result):
                _close(result)
                raise RpcError(500, "Command needs the asynchronous RPC path")
        except Exception as err:
            return _error(err, rid)
        return _result(result, rid)

    async def ahandle(self, request: Any, local: bool = False) -> dict[str, Any]:
        """Like ``handle``, awaiting ``async def`` commands (used by the RPC transports).
        ``local``: answer for this worker only (a request from another worker)."""
        rid, reply = self._start(request)
        if reply is not None:
            return reply
        try:
            result = self.call(request["method"], request.get("params"), local)
            if inspect.isawaitable(result):
                result = await result
        except Exception as err:
            return _error(err, rid)
        return _result(result, rid)

    @staticmethod
    def _start(request: Any) -> tuple[Any, dict[str, Any] | None]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return None, {
                "jsonrpc": "2.0",
                "error": {"code": -32600, "message": "Invalid Request"},
                "id": None,
            }
        return request.get("id"), None


def _error(err: Exception, rid: Any) -> dict[str, Any]:
    if isinstance(err, RpcError):
        return {"jsonrpc": "2.0", "error": {"code": err.code, "message": err.message}, "id": rid}
    # a failing command answers an error, never kills the server
    return {
        "jsonrpc": "2.0",
        "error": {"code": 500, "message": f"Internal error: {err}"},
        "id": rid,
    }


def _result(result: Any, rid: Any) -> dict[str, Any]:
    # Kamailio answers requests without "id" too (seen over HTTP), so ksr does the same.
    return {"jsonrpc": "2.0", "result": result, "id": rid}


def _close(aw: Any) -> None:
    close = getattr(aw, "close", None)
    if close is not None:
        close()


def parse_address(spec: str) -> tuple[int, Any]:
    """``udp:IP:PORT`` / ``udp:[v6]:PORT`` → (family, address); anything else is a unix path."""
    if spec.startswith("udp:"):
        rest = spec[4:]
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]:")
            return socket.AF_INET6, (host, int(port))
        host, _, port = rest.rpartition(":")
        return socket.AF_INET, (host, int(port))
    if len(spec.encode()) > SUN_PATH_MAX:
        raise ValueError(f"dgram_socket path is longer than {SUN_PATH_MAX} bytes: {spec}")
    return socket.AF_UNIX, spec
