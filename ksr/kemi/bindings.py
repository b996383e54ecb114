"""The callables a script sees for its KSR functions (``make_binding``), compiled with mypyc.

Every KSR call of every route runs through one of them: the argument check, the route check
and the return conversion run here, around the module's method. ``KsrExit`` and the pending
mark are the two signals a binding gives its engine (engine.py re-exports them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ksr.sip.message import Request
from ksr.suspend import Finished, Suspension

from .registry import KemiFunction, Route
from .runs import ABSENT, RunState

if TYPE_CHECKING:
    from ksr.core.context import MsgContext

log = logging.getLogger("ksr.script")
PENDING_MARK: Final = (
    "~~ksr~pending~~"  # a suspending call's answer to Lua: "yield, then ask again"
)


# The bindings of functions of up to two parameters take eight optional ones, not ``*args``:
# compiled, a ``*args`` signature goes through the generic argument parser (~100-300
# instructions a call, by the number of arguments), a fixed one through mypyc's short one. A
# script's call with more arguments than eight is a TypeError (no KEMI function takes more
# than six).
A = Any


def given(a0: A, a1: A, a2: A, a3: A, a4: A, a5: A, a6: A, a7: A) -> tuple[Any, ...]:
    """The arguments a binding was called with: the places before the first ABSENT one."""
    t = (a0, a1, a2, a3, a4, a5, a6, a7)
    for i in range(8):
        if t[i] is ABSENT:
            return t[:i]
    return t


class KsrExit(BaseException):
    """Raised by KSR.x.exit()/drop() in Python: ends the route as a normal exit."""


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


def method_binding(f: KemiFunction, engine: Any, lua: bool, method: str) -> Callable[..., Any]:
    """``KSR.is_INVITE`` and friends (``inline=("method", ...)``), answered here: the method
    tests are the commonest KSR calls, and the module's function is an interpreted frame."""

    state: RunState = engine.state

    def is_method(
        a0: A = ABSENT,
        a1: A = ABSENT,
        a2: A = ABSENT,
        a3: A = ABSENT,
        a4: A = ABSENT,
        a5: A = ABSENT,
        a6: A = ABSENT,
        a7: A = ABSENT,
    ) -> Any:
        if a0 is not ABSENT and lua:
            log.error("%s: takes no parameters", f.qualname)
            return False
        try:
            ctx = state.ctx
            if ctx is None:
                raise RuntimeError("no current message")
            m = ctx.msg
            if type(m) is Request:  # a request's own method, without ctx.method's property
                return m.method == method
            return ctx.method == method
        except Exception:
            log.exception("%s failed", f.qualname)
            return False

    return is_method


def totag_binding(f: KemiFunction, engine: Any, lua: bool) -> Callable[..., Any]:
    """``KSR.siputils.has_totag`` (``inline=("totag", 0)``), answered here: asked by most
    request routes (three times per anchor call), and the module's function is an
    interpreted frame."""

    state: RunState = engine.state

    def has_totag(
        a0: A = ABSENT,
        a1: A = ABSENT,
        a2: A = ABSENT,
        a3: A = ABSENT,
        a4: A = ABSENT,
        a5: A = ABSENT,
        a6: A = ABSENT,
        a7: A = ABSENT,
    ) -> Any:
        if a0 is not ABSENT and lua:
            log.error("%s: takes no parameters", f.qualname)
            return False
        ctx = state.ctx
        try:
            if ctx is None:
                raise RuntimeError("no current message")
            return 1 if ctx.msg.to.tag else -1
        except Exception:
            return -1

    return has_totag


def log_binding(f: KemiFunction, engine: Any, lua: bool, level: int) -> Callable[..., Any]:
    """``KSR.dbg`` and friends (``inline=("log", level)``), answered here: most log nothing
    at the running level, and the module's function is two interpreted frames. A level found
    off is noted in the Lua state when the engine can (``RunState.log_off``): Lua then answers
    until a level changes (ksr/kemi/log_levels.py)."""
    done: Any = False if lua else 0
    state: RunState = engine.state
    found = getattr(log, "_cache", None)  # CPython's: kept by the logger, cleared in place
    cache: dict[int, bool] = found if isinstance(found, dict) else {}

    def log_text(
        a0: A = ABSENT,
        a1: A = ABSENT,
        a2: A = ABSENT,
        a3: A = ABSENT,
        a4: A = ABSENT,
        a5: A = ABSENT,
        a6: A = ABSENT,
        a7: A = ABSENT,
    ) -> Any:
        if type(a0) is str and a1 is ABSENT:
            text: str = a0
        else:
            conv = coerce_args(f, given(a0, a1, a2, a3, a4, a5, a6, a7), lua)
            if conv is None:
                return False
            text = conv[0]
        try:
            # Logger.isEnabledFor with its cached answer read here (a call of it costs ~1k):
            # the logging module clears that cache at every level change (setLevel, disable)
            disabled = log.disabled
            on = False if disabled else cache.get(level)
            if on is None:
                on = log.isEnabledFor(level)
            if on:
                log.log(level, "%s", text.rstrip("\n"))
            elif not disabled:  # off by level (a disabled logger is no level to keep)
                note = state.log_off
                if note is not None:
                    note(level)
        except Exception:
            log.exception("%s failed", f.qualname)
            return False
        return done

    return log_text


def inline_kind(f: KemiFunction) -> str | None:
    """ "method" or "log" when the binding answers ``f`` itself (``method_binding``,
    ``log_binding``: the Lua engine answers these in Lua where it can), else None."""
    inline = f.inline
    if inline is None or f.ends_route or f.suspends or _off_routes(f):
        return None
    kind = inline[0]
    if kind == "method" and not f.params and f.returns == "bool":
        return kind
    if kind == "log" and f.params == ("str",) and f.returns == "none":
        return kind
    if kind == "totag" and not f.params and f.returns == "int":
        return kind
    return None


def make_binding(f: KemiFunction, engine: Any, lua: bool) -> Callable[..., Any]:
    """The callable a script sees for one KSR function.

    Every KSR call of every route runs through it, so it is one frame around the module's
    method: the route check (a set that is empty for most functions), the argument types
    that need no conversion, and the return kinds are tested inline rather than by wrapper
    functions (measured: a wrapper frame costs about as much as lupa's own crossing).
    ``engine``: the Engine whose ``ctx`` the call gets (typed Any: engine.py imports this
    module)."""
    fn = f.target()  # the module's compiled part when it has one (``via``), else the method
    if f.ends_route and not lua:  # Lua: its wrapper raises the exit mark (lua_engine.py)
        fn = ending(fn)
    off = _off_routes(f)
    n = len(f.params)
    ret = f.returns
    plain = ret == "int"  # returned as it is
    as_bool = ret == "bool"
    void = ret == "none"
    none_value: Any = False if lua else 0
    state: RunState = engine.state  # its fields are read directly (compiled)
    kind = inline_kind(f)
    if kind is not None and f.inline is not None:
        value = f.inline[1]
        if kind == "method":
            return method_binding(f, engine, lua, str(value))
        if kind == "totag":
            return totag_binding(f, engine, lua)
        return log_binding(f, engine, lua, int(value))

    def finish(r: Any) -> Any:
        """The result of a function returning an xval (bool, int and none are inline)."""
        if lua and isinstance(r, (list, dict)):
            return engine.to_script(r)  # XVAL arrays/dicts become Lua tables
        return r

    if n == 0:

        def call0(
            a0: A = ABSENT,
            a1: A = ABSENT,
            a2: A = ABSENT,
            a3: A = ABSENT,
            a4: A = ABSENT,
            a5: A = ABSENT,
            a6: A = ABSENT,
            a7: A = ABSENT,
        ) -> Any:
            if a0 is not ABSENT and lua:
                log.error("%s: takes no parameters", f.qualname)
                return False
            ctx = state.ctx
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
        one = n == 1

        # body() written out inline: a second frame per KSR call costs about as much as
        # lupa's own crossing (keep the two in step)
        def call_fast(
            a0: A = ABSENT,
            a1: A = ABSENT,
            a2: A = ABSENT,
            a3: A = ABSENT,
            a4: A = ABSENT,
            a5: A = ABSENT,
            a6: A = ABSENT,
            a7: A = ABSENT,
        ) -> Any:
            if type(a0) is k0 and (a1 is ABSENT if one else (type(a1) is k1 and a2 is ABSENT)):
                conv: Any = None
            else:
                conv = convert(given(a0, a1, a2, a3, a4, a5, a6, a7))
                if conv is None:
                    return False
            ctx = state.ctx
            if off:
                route = ctx.route if ctx is not None else "request"
                if route in off:
                    _warn_route(f, off, route)
            try:
                # the arguments spelled out, not splatted: compiled, a splat builds a list
                # and a tuple per call
                if conv is None:  # as called
                    r = fn(ctx, a0) if one else fn(ctx, a0, a1)
                else:
                    r = fn(ctx, conv[0]) if one else fn(ctx, conv[0], conv[1])
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
        return body(state.ctx, conv)

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
        if not state.suspendable:
            return body(state.ctx, conv)
        # the call runs in a greenlet: if it waits, Lua gets the pending mark and yields
        r = engine.server.runner.call(body, (state.ctx, conv))
        if type(r) is Finished:
            return r.result.unwrap()
        assert isinstance(r, Suspension)
        engine.pending = r
        return PENDING_MARK

    return call_suspending
