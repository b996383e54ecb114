"""The synchronous route runs of the script engines, compiled with mypyc.

A call runs ~8 routes and event callbacks; as a method of an (interpreted) engine each run was
a Python frame of its own. ``load()`` of each engine puts one of these closures in place of its
``run`` method on the instance, so ``Scripts`` calls compiled code straight into the script.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
import time
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


class Absent:
    """The place of an event callback's argument in a route run that has none. Runs take one
    optional argument, not ``*args``: compiled, a ``*args`` signature goes through the generic
    argument parser (~160 instructions a call; Scripts.run_route and the engine's run, twice
    per run)."""


ABSENT: Final = Absent()


class RunState:
    """What a script engine's runs set and its KSR bindings read: the message the calls are
    for (None between runs) and whether they may suspend (a Lua route coroutine runs). An
    object of its own, compiled, so they read and set these as fields (on the interpreted
    engine each was a dictionary lookup; ``Engine.ctx`` and ``suspendable`` stand for them)."""

    def __init__(self) -> None:
        self.ctx: MsgContext | None = None
        self.suspendable = False
        # Lua: notes a log level its ``KSR.dbg`` and friends found off in the Lua state, which
        # then answers them without crossing (LuaEngine.load; None: no such note)
        self.log_off: Callable[[int], object] | None = None


class SipMsg:
    """The ``msg`` argument of Python routes (app_python3's message object). ``ctx`` is the
    message it stands for: a synchronous run sets it on its engine's one SipMsg and gives the
    previous back at its end (as app_python3's, the object is valid during its run only).
    Compiled with the runner, which sets ``ctx`` twice per run: on an interpreted object
    each was a generic attribute store (~350 instructions)."""

    def __init__(self, ctx: MsgContext | None) -> None:
        self.ctx = ctx

    def _msg(self) -> MsgContext:
        ctx = self.ctx
        if ctx is None:
            raise AttributeError("msg is valid during its route run only")
        return ctx

    @property
    def Type(self) -> str:  # noqa: N802 - app_python3's name
        return "SIP_REQUEST" if self._msg().is_request else "SIP_REPLY"

    @property
    def Method(self) -> str:  # noqa: N802
        return self._msg().method

    @property
    def Status(self) -> str:  # noqa: N802
        m = self._msg().msg
        return str(getattr(m, "status", ""))

    @property
    def RURI(self) -> str | None:  # noqa: N802
        return self._msg().ruri

    @property
    def src_address(self) -> tuple[str, int]:
        ctx = self._msg()
        return (ctx.src_ip, ctx.src_port)

    @property
    def dst_address(self) -> tuple[str, int]:
        sock = self._msg().socket
        return (sock.ip, sock.port)

    def getHeader(self, name: str) -> str | None:  # noqa: N802
        return self._msg().msg.get(name)

    def rewrite_ruri(self, uri: str) -> None:
        self._msg().ruri = uri

    def set_dst_uri(self, uri: str) -> None:
        self._msg().dst_uri = uri


def lua_runner(engine: Any, runner: Any, methods: dict[str, int]) -> Callable[..., int]:
    """LuaEngine.run: a synchronous run (nested routes, events, reply routes) through the Lua
    function ``runner(name)`` makes for each route name (the script's ``__ksr_runner``), kept
    here; never suspends. ``methods``: the numbers the Lua side's ``KSR.is_<METHOD>`` tests
    know the request methods by (LuaEngine.load)."""

    state: RunState = engine.state
    runs: dict[str, Any] = {}  # by route name (a script has a few)

    def run_route(ctx: MsgContext, name: str, arg: Any = ABSENT) -> int:
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
            run = runs.get(name)
            if run is None:
                run = runner(name)
                if len(runs) < 256:  # names come from the configuration and the script
                    runs[name] = run
            result = run(method) if arg is ABSENT else run(method, arg)
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


def python_runner(engine: Any, msg: SipMsg, flat: bool) -> Callable[..., int]:
    """PythonEngine.run: a synchronous run of the handler's ``name`` with ``msg`` (the
    engine's one SipMsg) standing for ``ctx``; ``flat``: app_python3s (no msg argument)."""

    state: RunState = engine.state
    # set before load() makes the runner, and for good (a field of an interpreted object is
    # a dictionary lookup from here)
    handler = engine.handler
    limit: float = engine.limit
    found: list[AlarmGuard] = []  # the runaway guard, once looked up

    def run_route(ctx: MsgContext, name: str, arg: Any = ABSENT) -> int:
        fn = getattr(handler, name, None)
        if fn is None or not callable(fn):
            return 2
        prev = state.ctx
        state.ctx = ctx
        guard: AlarmGuard | None = None
        if prev is None and limit > 0:  # an outermost run: arm the runaway guard
            if found:
                guard = found[0]
            else:
                guard = engine.guard or engine.find_guard()
                if guard is not None:
                    found.append(guard)
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
            # routes take no argument, event callbacks one
            if arg is ABSENT:
                fn() if flat else fn(msg)
            else:
                fn(arg) if flat else fn(msg, arg)
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


class ScriptTimeout(BaseException):
    """A route ran past core.script_max_seconds. BaseException, so neither a KSR binding
    nor a script's ``except Exception`` can swallow it."""


class AlarmGuard:
    """The SIGALRM handler behind ``core.script_max_seconds``, installed once per process.

    Starting and ending a route run only set fields (no system call, no clock read: setting
    the interval timer twice per run cost ~20 µs on a virtual machine, as much as the rest of
    a KEMI call path; reading the clock ~1k instructions). While routes run, an interval
    timer ticks every ``limit / 16`` seconds (at most 0.125 s): the first tick that sees a run
    notes the time, and a later one raises once the run has gone on ``limit`` since, so a
    runaway route stops between ``limit`` and ``limit`` + two ticks. A tick that finds no
    route run for a whole second stops the timer (an idle worker gets no signals); the next
    run starts it. The handler raises only while a run is armed, so a late signal never hits
    the event loop. The instance lives in the signal table itself (its bound method is the
    handler), not in a module global.
    """

    IDLE_STOP = 1.0  # seconds without a route run before the interval timer stops

    def __init__(self) -> None:
        self.armed = False
        self.seen = 0.0  # when a tick first saw the armed run (0: none has yet)
        self.idle = 0.0  # when a tick first found no run since the last one armed (0: none)
        self.tick = 0.0  # the interval timer's period, 0 while stopped
        self.limit = 0.0  # the limit the period was worked out for

    @classmethod
    def current(cls) -> AlarmGuard | None:
        handler = signal.getsignal(signal.SIGALRM)
        guard = getattr(handler, "__self__", None)
        return guard if isinstance(guard, AlarmGuard) else None

    @classmethod
    def install(cls) -> AlarmGuard | None:
        """Install the handler (only possible from the main thread)."""
        guard = cls.current()
        if guard is None and threading.current_thread() is threading.main_thread():
            guard = cls()
            signal.signal(signal.SIGALRM, guard.on_alarm)
            # Python restores SIGALRM's default action (end the process) as it shuts down; a
            # tick still pending then would kill an exiting process with "Alarm clock".
            atexit.register(_stop_alarms)
        return guard

    def arm(self, seconds: float) -> None:
        """A run starts (PythonEngine.run writes this out)."""
        self.seen = self.idle = 0.0
        self.armed = True
        if not self.tick or seconds != self.limit:  # stopped while idle, or a new limit
            self.start(seconds)

    def start(self, seconds: float) -> None:
        """Start the interval timer for runs of ``seconds`` at most."""
        self.limit = seconds
        self.tick = tick = min(seconds / 16, 0.125)
        signal.setitimer(signal.ITIMER_REAL, tick, tick)

    def disarm(self) -> None:
        self.armed = False

    def on_alarm(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.armed:
            if not self.seen:
                self.seen = now
            elif now - self.seen >= self.limit:
                self.armed = False
                raise ScriptTimeout()
        elif not self.idle:
            self.idle = now
        elif now - self.idle > self.IDLE_STOP and self.tick:
            self.tick = 0.0
            signal.setitimer(signal.ITIMER_REAL, 0)


def _stop_alarms() -> None:
    """At exit: stop the interval timer and ignore SIGALRM from then on. Stopping the timer
    alone leaves a tick already sent but not yet delivered (seen under valgrind, which
    queues signals) to meet the default action Python restores as it shuts down; an ignored
    signal stays ignored through the shutdown."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
