"""What both script engines share: errors, the exit signal and argument coercion."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ksr.suspend import Finished, Suspension

from .registry import ExportRegistry, KemiFunction, Route

if TYPE_CHECKING:
    from ksr.core.context import MsgContext
    from ksr.core.server import Server

log = logging.getLogger("ksr.script")
EXIT_MARK = "~~ksr~exit~~"
PENDING_MARK = "~~ksr~pending~~"  # a suspending call's answer to Lua: "yield, then ask again"


class ScriptError(Exception):
    """A script failed to load or to check; names the file and line."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message)


class KsrExit(BaseException):
    """Raised by KSR.x.exit()/drop() in Python: ends the route as a normal exit."""


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
        self.ctx: MsgContext | None = None
        self.suspendable = False  # a Lua route coroutine is running: its calls may suspend
        self.pending: Suspension | None = None  # the call a Lua route just suspended on
        self.version = 0
        self.loaded_at = 0.0
        self.mtime: float | None = None  # of the script file when a reload loaded it

    # subclasses implement these
    def load(self) -> None:
        raise NotImplementedError

    def has_function(self, name: str) -> bool:
        raise NotImplementedError

    def to_script(self, value: Any) -> Any:
        """A list/dict result in the script's own types (Lua tables); as is by default."""
        return value

    def run(self, ctx: MsgContext, name: str, *args: Any) -> int:
        """Run a route/callback. Returns 1 done, 0 failed (error logged), 2 missing."""
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


def coerce_args(f: KemiFunction, args: tuple[Any, ...], lua: bool) -> list[Any] | None:
    """Convert script arguments per Kamailio's rules; None = refuse the call (returns false)."""
    params = f.params
    if len(args) < len(params):
        log.error("%s: too few parameters (%d of %d)", f.qualname, len(args), len(params))
        return None
    out: list[Any] = []
    for t, a in zip(params, args, strict=False):
        if t == "str":
            if isinstance(a, str):
                out.append(a)
            elif lua and isinstance(a, (int, float)) and not isinstance(a, bool):
                out.append(str(a))
            elif lua and isinstance(a, bytes):
                out.append(a.decode("utf-8", "surrogateescape"))
            else:
                log.error("%s: parameter must be a string, got %r", f.qualname, a)
                return None
        else:
            if isinstance(a, bool):
                out.append(int(a) if not lua else 0)
            elif isinstance(a, int):
                out.append(a)
            elif lua and isinstance(a, float):
                out.append(int(a))
            elif lua and isinstance(a, str):
                try:
                    out.append(int(float(a)))
                except ValueError:
                    out.append(0)
            elif lua and a is None:
                out.append(0)
            else:
                log.error("%s: parameter must be an integer, got %r", f.qualname, a)
                return None
    return out


def _off_routes(f: KemiFunction) -> set[str]:
    """The route names a call of ``f`` warns in: those outside the routes it declares (a
    name ksr does not map to a flag is allowed). Each warns once, then leaves the set."""
    if f.routes == Route.ANY:
        return set()
    return {name for name, flag in Route.BY_NAME.items() if not flag & f.routes}


def _warn_route(f: KemiFunction, off: set[str], route: str) -> None:
    """Warn that ``f`` runs in a route it is not meant for (once per route, for each loaded
    script). The call runs all the same, with its own return code: Kamailio's KEMI does not
    check route types either."""
    off.discard(route)
    log.warning(
        "%s called in a %s route; it is meant for %s only (run anyway)",
        f.qualname,
        route,
        Route.describe(f.routes),
    )


def ending(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, then the end of the route (KsrExit, a normal end)."""

    def end(ctx: MsgContext | None, *args: Any) -> Any:
        fn(ctx, *args)
        raise KsrExit()

    return end


def may_wait(f: KemiFunction) -> bool:
    """``f`` is declared to suspend and its module says it may wait with this configuration
    (``Module.may_wait``: registrar's calls do not with usrloc in memory)."""
    if not f.suspends:
        return False
    owner = getattr(f.fn, "__self__", None)
    ask = getattr(owner, "may_wait", None)
    return bool(ask(f.name)) if ask is not None else True


def make_binding(f: KemiFunction, engine: Engine, lua: bool) -> Callable[..., Any]:
    """The callable a script sees for one KSR function.

    Every KSR call of every route runs through it, so it is one frame around the module's
    method: the route check (a set that is empty for most functions), the argument types
    that need no conversion, and the return kinds are tested inline rather than by wrapper
    functions (measured: a wrapper frame costs about as much as lupa's own crossing)."""
    fn = f.fn
    if f.ends_route and not lua:  # Lua: its wrapper raises the exit mark (lua_engine.py)
        fn = ending(fn)
    off = _off_routes(f)
    n = len(f.params)
    ret = f.returns
    plain = ret == "int"  # returned as it is
    as_bool = ret == "bool"
    void = ret == "none"
    none_value: Any = False if lua else 0

    def finish(r: Any) -> Any:
        """The result of a function returning an xval (bool, int and none are inline)."""
        if lua and isinstance(r, (list, dict)):
            return engine.to_script(r)  # XVAL arrays/dicts become Lua tables
        return r

    if n == 0:

        def call0(*args: Any) -> Any:
            if args and lua:
                log.error("%s: takes no parameters", f.qualname)
                return False
            ctx = engine.ctx
            if off:
                route = ctx.route if ctx is not None else "request"
                if route in off:
                    _warn_route(f, off, route)
            try:
                r = fn(ctx)
                if plain:
                    return r
                if as_bool:
                    return True if r else False
                if void:
                    return none_value
                return finish(r)
            except KsrExit:
                raise
            except Exception:
                log.exception("%s failed", f.qualname)
                return False

        return call0

    params = f.params
    all_str = all(p == "str" for p in params)
    # the types that need no conversion: most calls (sanity_check(17895, 7), save("location",
    # 0), pv.get("$si")) pass exactly these, and skip coerce_args (~1 us a call)
    kinds = tuple(str if p == "str" else int for p in params)

    def convert(args: tuple[Any, ...]) -> Any:
        """The arguments as the function takes them, or None (refused: the call is false)."""
        if all_str and len(args) >= n:
            conv: Any = args[:n]
            for a in conv:
                if type(a) is not str:
                    return coerce_args(f, args, lua)
            return conv
        return coerce_args(f, args, lua)

    suspending = lua and may_wait(f)  # Lua routes need call_suspending (below) for these
    if n <= 2 and not suspending:
        k0 = kinds[0]
        k1 = kinds[-1]

        # body() written out inline: a second frame per KSR call costs about as much as
        # lupa's own crossing (keep the two in step)
        def call_fast(*args: Any) -> Any:
            if len(args) == n and type(args[0]) is k0 and type(args[-1]) is k1:
                conv: Any = args
            else:
                conv = convert(args)
                if conv is None:
                    return False
            ctx = engine.ctx
            if off:
                route = ctx.route if ctx is not None else "request"
                if route in off:
                    _warn_route(f, off, route)
            try:
                r = fn(ctx, *conv)
                if plain:
                    return r
                if as_bool:
                    return True if r else False
                if void:
                    return none_value
                return finish(r)
            except KsrExit:
                raise
            except Exception:
                log.exception("%s failed", f.qualname)
                return False

        return call_fast

    def body(ctx: MsgContext | None, conv: Any) -> Any:
        if off:
            route = ctx.route if ctx is not None else "request"
            if route in off:
                _warn_route(f, off, route)
        try:
            r = fn(ctx, *conv)
            if plain:
                return r
            if as_bool:
                return True if r else False
            if void:
                return none_value
            return finish(r)
        except KsrExit:
            raise
        except Exception:
            log.exception("%s failed", f.qualname)
            return False

    def call(*args: Any) -> Any:
        conv = convert(args)
        if conv is None:
            return False
        return body(engine.ctx, conv)

    if not suspending:
        return call

    def call_suspending(*args: Any) -> Any:
        if (
            len(args) == n
            and type(args[0]) is kinds[0]
            and type(args[-1]) is kinds[-1]
            and (n < 3 or all(type(a) is k for a, k in zip(args, kinds, strict=False)))
        ):
            conv: Any = args
        else:
            conv = convert(args)
            if conv is None:
                return False
        if not engine.suspendable:
            return body(engine.ctx, conv)
        # the call runs in a greenlet: if it waits, Lua gets the pending mark and yields
        r = engine.server.runner.call(body, (engine.ctx, conv))
        if type(r) is Finished:
            return r.result.unwrap()
        assert isinstance(r, Suspension)
        engine.pending = r
        return PENDING_MARK

    return call_suspending
