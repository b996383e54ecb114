"""The RPC registry that every module adds commands to (Kamailio's method names)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MARK = "__ksr_rpc__"


class RpcError(Exception):
    """A fault returned to the RPC client: JSON-RPC ``error`` with code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def rpc(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a module method as the RPC command ``name`` (e.g. ``"ul.dump"``).

    The method receives the positional params as strings/numbers as sent by the client."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        names: list[str] = getattr(fn, _MARK, [])
        names.append(name)
        setattr(fn, _MARK, names)
        return fn

    return mark


@dataclass(slots=True)
class RpcCommand:
    name: str
    fn: Callable[..., Any]
    doc: str


class RpcRegistry:
    def __init__(self) -> None:
        self.commands: dict[str, RpcCommand] = {}

    def add(self, name: str, fn: Callable[..., Any], doc: str = "") -> None:
        if name in self.commands:
            raise ValueError(f"RPC command {name} registered twice")
        self.commands[name] = RpcCommand(name, fn, doc or (inspect.getdoc(fn) or ""))

    def add_object(self, obj: Any) -> None:
        for attr in dir(type(obj)):
            raw = getattr(type(obj), attr, None)
            for name in getattr(raw, _MARK, ()):
                self.add(name, getattr(obj, attr))

    def call(self, method: str, params: list[Any] | dict[str, Any] | None) -> Any:
        cmd = self.commands.get(method)
        if cmd is None:
            raise RpcError(500, "Method Not Found")
        args = params if isinstance(params, list) else []
        kwargs = params if isinstance(params, dict) else {}
        sig = inspect.signature(cmd.fn)
        try:
            sig.bind(*args, **kwargs)
        except TypeError as err:
            raise RpcError(500, f"Invalid parameters: {err}") from None
        return cmd.fn(*args, **kwargs)

    def handle(self, request: Any) -> dict[str, Any] | None:
        """Answer one JSON-RPC 2.0 request object (already decoded)."""
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}
        rid = request.get("id")
        try:
            result = self.call(request["method"], request.get("params"))
        except RpcError as err:
            return {"jsonrpc": "2.0", "error": {"code": err.code, "message": err.message}, "id": rid}
        except Exception as err:  # a failing command answers an error, never kills the server
            return {"jsonrpc": "2.0", "error": {"code": 500, "message": f"Internal error: {err}"}, "id": rid}
        if "id" not in request:
            return None  # notification
        return {"jsonrpc": "2.0", "result": result, "id": rid}
