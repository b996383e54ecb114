"""The Python engine, shaped like Kamailio's app_python3 and app_python3s.

app_python3: the script does ``import KSR`` and defines ``mod_init()`` returning an object whose
methods are the routes, called as ``(self, msg)`` or ``(self, msg, evname)``. app_python3s
(``flat=True``, selected by ``loadmodule = ["app_python3s"]``): the routes are module-level
functions called as ``()`` or ``(evname)``, and there is no mod_init. Each loaded version gets
its own module namespace; helper modules imported from the script's folder are loaded fresh
with it.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import sys
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ksr.suspend import Finished, Suspension

from .engine import Engine, KsrExit, ScriptError, make_binding, may_wait
from .registry import ExportRegistry
from .runs import ABSENT, AlarmGuard, ScriptTimeout, SipMsg, python_runner

if TYPE_CHECKING:
    from ksr.core.context import MsgContext
    from ksr.core.server import Server

log = logging.getLogger("ksr.script")


# each load of a script is a module of its own name (the old one may still be running)
_GENERATIONS = itertools.count(1)


class PythonEngine(Engine):
    language = "python"

    def __init__(
        self, server: Server, path: Path, registry: ExportRegistry, flat: bool = False
    ) -> None:
        super().__init__(server, path, registry)
        self.flat = flat  # app_python3s: module-level route functions, no msg argument
        self.ksr = self._build_ksr()
        self.module: types.ModuleType | None = None
        self.handler: Any = None
        self.helper_modules: list[str] = []
        self.guard: AlarmGuard | None = None  # the runaway guard, once looked up
        self.limit = server.config.core.script_max_seconds  # of the guard; 0 = none
        # whether a route may wait on I/O (a KSR function that may wait is loaded): else
        # request routes run as plain calls, without a greenlet
        self.routes_wait = True
        # the msg of synchronous runs, one for all: making one per run cost ~1.5k instructions
        self.msg = SipMsg(None)

    def _build_ksr(self) -> types.ModuleType:
        ksr = types.ModuleType("KSR", "KSR functions of ksr (Kamailio KEMI compatible)")
        ksr.__version__ = 1003  # type: ignore[attr-defined]
        for sub in self.registry.submodules():
            funcs = {
                n: make_binding(f, self, lua=False)
                for n, f in self.registry.functions[sub].items()
                if "python" in f.engines
            }
            if sub == "":
                for n, b in funcs.items():
                    setattr(ksr, n, b)
            else:
                m = types.ModuleType(f"KSR.{sub}")
                for n, b in funcs.items():
                    setattr(m, n, b)
                setattr(ksr, sub, m)
        return ksr

    def load(self) -> None:
        folder = str(self.path.parent.resolve())
        # Helper modules from the script's folder are loaded fresh with each version; if this
        # version fails, the running one gets its helpers and its KSR module back.
        stale = {
            name: mod
            for name, mod in list(sys.modules.items())
            if name != "KSR" and _in_folder(mod, folder)
        }
        saved_ksr = sys.modules.get("KSR")
        for name in stale:
            del sys.modules[name]
        before = set(sys.modules)
        try:
            self._load(folder, before)
        except BaseException:
            for name in set(sys.modules) - before:
                if _in_folder(sys.modules[name], folder):
                    del sys.modules[name]
            sys.modules.update(stale)
            if saved_ksr is not None:
                sys.modules["KSR"] = saved_ksr
            raise
        if self.limit > 0:
            AlarmGuard.install()
        self.run = python_runner(self, self.msg, self.flat)  # type: ignore[method-assign]
        self.routes_wait = any(may_wait(f) for f in self.registry if "python" in f.engines)

    def _load(self, folder: str, before: set[str]) -> None:
        modname = f"ksr_script_{next(_GENERATIONS)}"
        sys.modules["KSR"] = self.ksr
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(modname, self.path)
        if spec is None or spec.loader is None:
            raise ScriptError("not a Python file", str(self.path))
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except SyntaxError as err:
            raise ScriptError(
                f"syntax error: {err.msg}", err.filename or str(self.path), err.lineno
            ) from None
        except FileNotFoundError:
            raise ScriptError("cannot read script: no such file", str(self.path)) from None
        except BaseException as err:
            file, line = _last_frame(err, str(self.path))
            raise ScriptError(
                f"error running the script: {type(err).__name__}: {err}", file, line
            ) from None
        if self.flat:
            self._init_flat(module, before)
            return
        init = getattr(module, "mod_init", None)
        if not callable(init):
            hint = (
                " - for module-level route functions load app_python3s"
                if callable(
                    getattr(module, self.server.config.core.kemi.request_route_callback, None)
                )
                else ""
            )
            raise ScriptError(
                f"no mod_init() function (it must return the routing object){hint}", str(self.path)
            )
        try:
            handler = init()
        except BaseException as err:
            file, line = _last_frame(err, str(self.path))
            raise ScriptError(
                f"mod_init() failed: {type(err).__name__}: {err}", file, line
            ) from None
        if handler is None:
            raise ScriptError(
                "mod_init() returned None (it must return the routing object)", str(self.path)
            )
        rr = self.server.config.core.kemi.request_route_callback
        if not callable(getattr(handler, rr, None)):
            raise ScriptError(f"the object from mod_init() has no method {rr}", str(self.path))
        child_init = getattr(handler, "child_init", None)
        if callable(child_init):
            try:
                rc = child_init(0)
            except BaseException as err:
                file, line = _last_frame(err, str(self.path))
                raise ScriptError(f"child_init() failed: {err}", file, line) from None
            if not isinstance(rc, int):
                raise ScriptError("child_init() must return an int", str(self.path))
        self.module = module
        self.handler = handler
        self.helper_modules = sorted(
            n for n in set(sys.modules) - before if _in_folder(sys.modules[n], folder)
        )
        self.loaded_at = time.time()

    def _init_flat(self, module: types.ModuleType, before: set[str]) -> None:
        """app_python3s: the module itself holds the routes; its script_init and
        script_child_init functions (modparams of app_python3s) run once, as Kamailio runs them."""
        rr = self.server.config.core.kemi.request_route_callback
        if not callable(getattr(module, rr, None)):
            raise ScriptError(f"no function {rr}() in the script (app_python3s)", str(self.path))
        params = self.server.config.modparam.get("app_python3s", {})
        for key, args in (("script_init", ()), ("script_child_init", (0,))):
            name = str(params.get(key, ""))
            if not name:
                continue
            fn = getattr(module, name, None)
            if not callable(fn):
                raise ScriptError(f"app_python3s {key}: no function {name}()", str(self.path))
            try:
                fn(*args)
            except BaseException as err:
                file, line = _last_frame(err, str(self.path))
                raise ScriptError(
                    f"{name}() failed: {type(err).__name__}: {err}", file, line
                ) from None
        folder = str(self.path.parent.resolve())
        self.module = module
        self.handler = module
        self.helper_modules = sorted(
            n for n in set(sys.modules) - before if _in_folder(sys.modules[n], folder)
        )
        self.loaded_at = time.time()

    def has_function(self, name: str) -> bool:
        return callable(getattr(self.handler, name, None))

    def run(self, ctx: MsgContext, name: str, arg: Any = ABSENT) -> int:
        """A synchronous run. load() puts the compiled ``runs.python_runner`` in this
        method's place on the instance (a frame less per run, ~8 runs a call); this one
        answers for an engine that is not loaded."""
        return 2

    def start(
        self,
        ctx: MsgContext,
        name: str,
        args: tuple[Any, ...],
        done: Callable[[MsgContext, int], None],
    ) -> int | None:
        """Run a route that may wait on I/O: its result, or None when it suspended (then
        ``done(ctx, rc)`` is called when it finishes)."""
        if not self.routes_wait:  # nothing can wait: no greenlet (two switches a route)
            return self.run(ctx, name, *args) if args else self.run(ctx, name)
        fn = getattr(self.handler, name, None)
        if fn is None or not callable(fn):
            return 2
        token = self._enter(ctx)
        runner = self.server.runner
        try:
            r = runner.call(self._invoke, (fn, ctx, name, args))
        finally:
            self._leave(token)
        if type(r) is Finished:
            return int(r.result.unwrap())
        assert isinstance(r, Suspension)
        runner.spawn(self._complete, ctx, r, done)
        return None

    async def _complete(
        self, ctx: MsgContext, s: Suspension, done: Callable[[MsgContext, int], None]
    ) -> None:
        fin = await self.server.runner.complete(s, lambda: self._enter(ctx), self._leave)
        done(ctx, int(fin.result.unwrap()))

    def find_guard(self) -> AlarmGuard | None:
        guard = self.guard = AlarmGuard.current()
        return guard

    def _enter(self, ctx: MsgContext) -> tuple[MsgContext | None, AlarmGuard | None]:
        """Make ``ctx`` the current message (and arm the runaway guard for an outermost run)."""
        state = self.state  # its fields, not the Engine.ctx property (an interpreted frame)
        prev = state.ctx
        state.ctx = ctx
        if prev is not None or self.limit <= 0:
            return prev, None  # a nested run: the outermost run's guard covers it
        guard = self.guard or self.find_guard()
        if guard is not None:
            guard.arm(self.limit)
        return prev, guard

    def _leave(self, token: tuple[MsgContext | None, AlarmGuard | None]) -> None:
        prev, guard = token
        if guard is not None:
            guard.disarm()
        self.state.ctx = prev

    def _invoke(self, fn: Any, ctx: MsgContext, name: str, args: tuple[Any, ...]) -> int:
        try:
            if self.flat:
                fn(*args)
            else:
                fn(SipMsg(ctx), *args)
            return 1
        except BaseException as err:
            return self.failed(err, name)

    def failed(self, err: BaseException, name: str) -> int:
        """What a route run that raised ``err`` returns (anything but the script's own
        errors, the exit and the runaway guard's stop goes on up)."""
        if isinstance(err, (KsrExit, SystemExit)):
            return 1
        if isinstance(err, ScriptTimeout):
            log.error("%s: %s() exceeded %.1fs (runaway loop?)", self.path, name, self.limit)
            return 0
        if isinstance(err, Exception):
            file, line = _last_frame(err, str(self.path))
            log.error("%s:%s: error in %s(): %s: %s", file, line, name, type(err).__name__, err)
            log.debug("%s", "".join(traceback.format_exception(err)))
            return 0
        raise err


def _in_folder(mod: Any, folder: str) -> bool:
    f = getattr(mod, "__file__", None)
    if not f:
        return False
    d = os.path.dirname(f)
    if d == folder:
        return True
    # realpath only for a directory of the same name: a reload scans all of sys.modules
    return os.path.basename(d) == os.path.basename(folder) and os.path.realpath(d) == folder


def _last_frame(err: BaseException, default_file: str) -> tuple[str, int | None]:
    """The innermost frame of the traceback that lies in a script file (not ksr's code)."""
    tb = traceback.extract_tb(err.__traceback__)
    ksr_dir = str(Path(__file__).resolve().parent.parent)
    for fr in reversed(tb):
        if not fr.filename.startswith(ksr_dir) and not fr.filename.startswith("<frozen"):
            return fr.filename, fr.lineno
    return default_file, None
