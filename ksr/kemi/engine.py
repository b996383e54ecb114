"""What both script engines share: errors, the exit signal and argument coercion."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ksr.suspend import Suspension

from .bindings import (
    PENDING_MARK,
    KsrExit,
    coerce_args,
    ending,
    make_binding,
    may_wait,
)
from .registry import ExportRegistry
from .runs import ABSENT, RunState

if TYPE_CHECKING:
    from ksr.core.context import MsgContext
    from ksr.core.server import Server

log = logging.getLogger("ksr.script")
EXIT_MARK = "~~ksr~exit~~"


class ScriptError(Exception):
    """A script failed to load or to check; names the file and line."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message)


_LUA_POS = re.compile(r"^(?:\[string \"(.*?)\"\]|([^:\s]+\.lua)):(\d+):\s*(.*)$", re.S)


def split_lua_position(text: str) -> tuple[str | None, int | None, str]:
    """'file.lua:12: message' -> (file, 12, message)."""
    m = _LUA_POS.match(text.strip())
    if not m:
        return None, None, text
    return (m.group(1) or m.group(2)), int(m.group(3)), m.group(4)


class Engine:
    """Base of the Lua and Python engines."""

    language = ""

    def __init__(self, server: Server, path: Path, registry: ExportRegistry) -> None:
        self.server = server
        self.path = path
        self.registry = registry
        self.state = RunState()  # the current message and whether calls may suspend
        self.pending: Suspension | None = None  # the call a Lua route just suspended on
        self.version = 0
        self.loaded_at = 0.0
        self.mtime: float | None = None  # of the script file when a reload loaded it
        self.callbacks: dict[str, bool] = {}  # has_callback's answers, by function name
        # whether a route may wait on I/O: else ``start`` is ``run`` (Scripts calls run)
        self.routes_wait = False

    @property
    def ctx(self) -> MsgContext | None:
        """The message the running route is for (None between runs)."""
        return self.state.ctx

    @ctx.setter
    def ctx(self, ctx: MsgContext | None) -> None:
        self.state.ctx = ctx

    @property
    def suspendable(self) -> bool:
        """A Lua route coroutine is running: its calls may suspend."""
        return self.state.suspendable

    @suspendable.setter
    def suspendable(self, on: bool) -> None:
        self.state.suspendable = on

    # subclasses implement these
    def load(self) -> None:
        raise NotImplementedError

    def has_function(self, name: str) -> bool:
        raise NotImplementedError

    def has_callback(self, name: str) -> bool:
        """Whether the script defines the event callback ``name``, asked once per name: an
        engine is one loaded version of the script (a reload makes a new engine). Modules
        ask before they build an event's context, so a script without the callback costs
        them nothing per event."""
        known = self.callbacks.get(name)
        if known is None:
            known = self.callbacks[name] = self.has_function(name)
        return known

    def to_script(self, value: Any) -> Any:
        """A list/dict result in the script's own types (Lua tables); as is by default."""
        return value

    def run(self, ctx: MsgContext, name: str, arg: Any = ABSENT) -> int:
        """Run a route, or an event callback with its argument. Returns 1 done, 0 failed
        (error logged), 2 missing."""
        raise NotImplementedError

    def start(
        self,
        ctx: MsgContext,
        name: str,
        args: tuple[Any, ...],
        done: Callable[[MsgContext, int], None],
    ) -> int | None:
        """Run a route that may wait on I/O: its result (as ``run``), or None when it was
        suspended; then ``done(ctx, rc)`` is called once it finishes."""
        return self.run(ctx, name, *args)

    def used_functions(self) -> list[tuple[str, int]]:
        """KSR function names the script text calls, with their lines (for `ksr check`)."""
        text = self.path.read_text(errors="replace")
        out: list[tuple[str, int]] = []
        for n, line in enumerate(text.splitlines(), 1):
            stripped = line.split("--", 1)[0] if self.language == "lua" else line.split("#", 1)[0]
            for m in re.finditer(r"\bKSR((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*\(", stripped):
                out.append(("KSR" + m.group(1), n))
        return out

    def check_names(self) -> list[str]:
        """Errors for every KSR.x.y(...) call whose function does not exist."""
        errors = []
        for qual, line in self.used_functions():
            if not self.registry.has(qual):
                errors.append(f"{self.path}:{line}: unknown function {qual}")
        return errors


__all__ = [
    "EXIT_MARK",
    "PENDING_MARK",
    "Engine",
    "KsrExit",
    "ScriptError",
    "coerce_args",
    "ending",
    "make_binding",
    "may_wait",
    "split_lua_position",
]
