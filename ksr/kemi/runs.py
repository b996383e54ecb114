"""The synchronous route runs of the script engines, compiled with mypyc.

A call runs ~8 routes and event callbacks; as a method of an (interpreted) engine each run was
a Python frame of its own. ``load()`` of each engine puts one of these closures in place of its
``run`` method on the instance, so ``Scripts`` calls compiled code straight into the script.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import greenlet

from ksr import suspend
from ksr.sip.message import Request

if TYPE_CHECKING:
    from ksr.core.context import MsgContext

log = logging.getLogger("ksr.script")
# C statics when compiled (an imported name is a module-dict lookup per use)
getcurrent: Final = greenlet.getcurrent
Worker: Final = suspend.Worker


class RunState:
    """What a script engine's runs set and its KSR bindings read: the message the calls are
    for (None between runs) and whether they may suspend (a Lua route coroutine runs). An
    object of its own, compiled, so they read and set these as fields (on the interpreted
    engine each was a dictionary lookup; ``Engine.ctx`` and ``suspendable`` stand for them)."""

    def __init__(self) -> None:
        self.ctx: MsgContext | None = None
        self.suspendable = False


def lua_runner(engine: Any, run: Any, methods: dict[str, int]) -> Callable[..., int]:
    """LuaEngine.run: a synchronous run (nested routes, events, reply routes) through ``run``
    (the script's ``__ksr_run``); never suspends. ``methods``: the numbers the Lua side's
    ``KSR.is_<METHOD>`` tests know the request methods by (LuaEngine.load)."""

    state: RunState = engine.state

    def run_route(ctx: MsgContext, name: str, *args: Any) -> int:
        prev_ctx = state.ctx
        prev_suspendable = state.suspendable
        state.ctx = ctx
        state.suspendable = False
        # a nested run finishes before its caller goes on (no_suspend/restore_suspend, inline)
        g = getcurrent()
        held = type(g) is Worker and g.allow
        if held:
            g.allow = False
        m = ctx.msg
        # a number (a Lua string is hashed as it is made); a reply's CSeq method is asked of
        # Python by the tests themselves
        method = methods.get(m.method) if type(m) is Request else None
        try:
            # no ``*args`` splat when there is none (routes) or one (event callbacks)
            if not args:
                result = run(name, method)
            elif len(args) == 1:
                result = run(name, method, args[0])
            else:
                result = run(name, method, *args)
        except Exception as err:
            log.error("%s: %s failed: %s", engine.path, name, err)
            return 0
        finally:
            if held:
                g.allow = True
            state.ctx = prev_ctx
            state.suspendable = prev_suspendable
        return 1 if result == 1 else int(engine.report(name, result))

    return run_route


def python_runner(engine: Any, msg: Any, flat: bool) -> Callable[..., int]:
    """PythonEngine.run: a synchronous run of the handler's ``name`` with ``msg`` (the
    engine's one SipMsg) standing for ``ctx``; ``flat``: app_python3s (no msg argument)."""

    state: RunState = engine.state

    def run_route(ctx: MsgContext, name: str, *args: Any) -> int:
        fn = getattr(engine.handler, name, None)
        if fn is None or not callable(fn):
            return 2
        prev = state.ctx
        state.ctx = ctx
        guard: Any = None
        limit: float = engine.limit
        if prev is None and limit > 0:  # an outermost run: arm the runaway guard
            guard = engine.guard or engine.find_guard()
            if guard is not None:  # guard.arm(limit), written out
                guard.seen = 0.0
                guard.idle = 0.0
                guard.armed = True
                if not guard.tick or limit != guard.limit:
                    guard.start(limit)
        # a nested run finishes before its caller goes on (no_suspend, written out)
        g = getcurrent()
        held = type(g) is Worker and g.allow
        if held:
            g.allow = False
        prev_msg = msg.ctx  # a nested run (an event callback) gives the outer run's back
        msg.ctx = ctx
        try:
            # no ``*args`` splat: routes take no argument, event callbacks one
            if flat:
                fn(*args)
            elif not args:
                fn(msg)
            elif len(args) == 1:
                fn(msg, args[0])
            else:
                fn(msg, *args)
            return 1
        except BaseException as err:
            return int(engine.failed(err, name))
        finally:
            msg.ctx = prev_msg
            if held:
                g.allow = True
            if guard is not None:
                guard.armed = False
            state.ctx = prev

    return run_route
