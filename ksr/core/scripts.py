"""The routing script: which engine runs it, and runs of its routes and event callbacks.

The engine in use is ``server.engine`` (a reload swaps it, docs/hot-reload.md; kept here as
``Scripts.engine``); a route of a message whose transaction started under an older version
runs in that version.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ksr.kemi.engine import Engine, ScriptError
from ksr.kemi.runs import ABSENT
from ksr.sip.message import Header, Request

from .context import MsgContext, RouteType

if TYPE_CHECKING:
    from .server import Server

# a C static when compiled (an imported name is a module-dict lookup per use): each route run
# reads the clock twice
perf_counter: Final = time.perf_counter


class Scripts:
    """Engines for the script and runs of its routes (``Server.run_route`` and friends)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stats = server.core_stats
        self.latency = server.latency
        self.runs = server.core_stats.script_runs  # core:script_runs
        self.route_series = self.latency.routes  # route_duration_seconds by route name
        # made once: a bound method is a new object each time it is read
        self.resumed_done: Callable[[MsgContext, int], None] = self._resumed_done
        # the newest script version (``server.engine`` reads and sets this field): a field
        # here, where the interpreted server's attribute was a dictionary lookup per run
        self.engine: Engine | None = None
        # the engine whose run ran last and its ``run`` (its compiled runner, runs.py, an
        # attribute of the interpreted engine, ~500 instructions to find): read once per
        # engine. Engines are loaded (``run`` set) before any route runs in them.
        self._ran: Engine | None = None
        self._run: Callable[..., int] | None = None

    def make_engine(self, path: Path) -> Engine:
        server = self.server
        if path.suffix == ".lua":
            from ksr.kemi.lua_engine import LuaEngine

            return LuaEngine(server, path, server.registry)
        if path.suffix == ".py":
            from ksr.kemi.python_engine import PythonEngine

            flat = "app_python3s" in server.config.loadmodule  # Kamailio's way to pick it
            return PythonEngine(server, path, server.registry, flat=flat)
        raise ScriptError("unknown script type (use a .lua or .py file)", str(path))

    def load_script(self, path: Path | None = None) -> Engine:
        server = self.server
        p = path or server.script_path
        if p is None:
            raise ScriptError("no routing script given (--script FILE.lua|FILE.py)")
        engine = server.make_engine(Path(p))
        engine.load()
        engine.version = (server.engine.version + 1) if server.engine else 1
        server.engine = engine
        server.script_path = Path(p)
        return engine

    def engine_for(self, ctx: MsgContext) -> Engine | None:
        """The script version a route of this message runs in: the one its transaction
        started with (tm pins ``tx.engine``), else the newest (docs/hot-reload.md)."""
        pinned = getattr(ctx.tx, "engine", None)
        return pinned if pinned is not None else self.engine

    def run_route(self, ctx: MsgContext, name: str, arg: Any = ABSENT) -> int:
        """Run a route, or an event callback with its argument: 1 done (also
        ``KSR.x.exit()``), 0 the script failed, 2 no such function."""
        # engine_for and the bookkeeping inline: a call runs ~8 routes and event callbacks
        tx = ctx.tx
        eng = getattr(tx, "engine", None) if tx is not None else None
        if eng is None:
            eng = self.engine
            if eng is None:
                return 2
        if not name or name == "none":
            return 2
        run = self._run
        if eng is not self._ran or run is None:
            run = self._run = eng.run
            self._ran = eng
        self.runs.value += 1
        t0 = perf_counter()
        rc = run(ctx, name) if arg is ABSENT else run(ctx, name, arg)
        t = perf_counter() - t0
        (self.route_series.get(name) or self.latency.route_series(name)).observe(t)
        if rc == 0:
            self.stats.script_errors.inc()
        return rc

    def start_route(
        self, ctx: MsgContext, name: str, done: Callable[[MsgContext, int], None]
    ) -> int | None:
        """Run a route that may wait on I/O: its result as ``run_route``, or None when it
        was suspended; ``done(ctx, rc)`` is called when it finishes. (Every request comes
        here: engine_for and the timing inline, as in run_route.)"""
        tx = ctx.tx
        eng = getattr(tx, "engine", None) if tx is not None else None
        if eng is None:
            eng = self.engine
            if eng is None:
                return 2
        if not name or name == "none":
            return 2
        self.runs.value += 1
        t0 = perf_counter()
        if eng.routes_wait:
            rc = eng.start(ctx, name, (), self.resumed_done)
            if rc is None:  # waiting on I/O: the route's time is taken when it finishes
                ctx.extra["_route_run"] = (name, t0, done)
                return None
        else:  # nothing can wait: start would only call run (a frame less)
            run = self._run
            if eng is not self._ran or run is None:
                run = self._run = eng.run
                self._ran = eng
            rc = run(ctx, name)
        t = perf_counter() - t0
        (self.route_series.get(name) or self.latency.route_series(name)).observe(t)
        return rc

    @staticmethod
    def route_waiting(ctx: MsgContext) -> bool:
        """Whether the request route of ``ctx`` started and now waits on I/O (it resumes
        later, e.g. into ``t_relay``)."""
        return "_route_run" in ctx.extra

    def _resumed_done(self, ctx: MsgContext, rc: int) -> None:
        name, t0, done = ctx.extra.pop("_route_run")
        self.latency.route_done(name, perf_counter() - t0)
        done(ctx, rc)

    def has_callback(self, name: str, ctx: MsgContext | None = None) -> bool:
        """Whether the script version a route of ``ctx`` runs in (the newest without one)
        defines the callback ``name``: a module asks before it builds an event's context."""
        if not name or name == "none":
            return False
        tx = ctx.tx if ctx is not None else None
        eng = getattr(tx, "engine", None) if tx is not None else None
        if eng is None:
            eng = self.engine
            if eng is None:
                return False
        # the engine's answers read here (a dict of the interpreted engine): its method, a
        # Python frame, only for the first ask of each name
        known = eng.callbacks.get(name)
        return eng.has_callback(name) if known is None else known

    def run_event(self, name: str, evname: str, ctx: MsgContext | None = None) -> int:
        """Run an event callback ``name(evname)`` (Python: ``(self, msg, evname)``); 2 when
        the script has no such function."""
        if ctx is None:
            if not self.has_callback(name):  # no made-up message for nothing
                return 2
            ctx = self.faked_context()
        ctx.route = RouteType.EVENT
        # this object's run_route, not the server's name for it (an attribute of the
        # interpreted server per event): ksr.testing's harness observes run_event itself
        return self.run_route(ctx, name, evname)

    def faked_context(self) -> MsgContext:
        """A context around a made-up OPTIONS, for routes run without a message (events)."""
        req = Request(
            "OPTIONS",
            "sip:you@kamailio.org",
            [
                Header("Via", "SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKdummy"),
                Header("From", "<sip:you@kamailio.org>;tag=faked"),
                Header("To", "<sip:you@kamailio.org>"),
                Header("Call-ID", "faked"),
                Header("CSeq", "1 OPTIONS"),
                Header("Content-Length", "0"),
            ],
        )
        listeners = self.server.listeners
        ctx = MsgContext(self.server, req, "127.0.0.1", 9, listeners[0] if listeners else None)
        ctx.faked = True
        return ctx
