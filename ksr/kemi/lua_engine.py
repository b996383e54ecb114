"""The Lua engine: one lupa runtime per loaded script version.

The script sees ``KSR`` as Lua tables of Python functions that take and return only strings,
numbers, booleans and nil (never a wrapped Python object: lupa's attribute lookups on those are
unreliable). Routes run through a small Lua trampoline that resets the instruction budget,
calls the global function by name and turns ``KSR.x.exit()`` into a normal end.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outcome import Value

from ksr.sip.message import Request
from ksr.suspend import Suspension

from . import log_levels
from .bindings import inline_kind
from .engine import (
    EXIT_MARK,
    Engine,
    ScriptError,
    make_binding,
    may_wait,
    split_lua_position,
)
from .registry import ExportRegistry
from .runs import ABSENT, lua_runner

if TYPE_CHECKING:
    from ksr.core.context import MsgContext
    from ksr.core.server import Server

log = logging.getLogger("ksr.script")

RUNTIMES = {"lua51": "lupa.lua51", "luajit": "lupa.luajit21", "lua54": "lupa.lua54"}

_BOOTSTRAP = r"""
local budget_steps, step = ...
local pcall = pcall
local hits = 0
local exit_mark = "~~ksr~exit~~"
KSRVERSION = "2.0"
-- KSR functions that end the route (KSR.x.exit, KSR.x.drop): the call, then a normal end
function __ksr_ending(pyfn)
  return function(...)
    pyfn(...)
    error(exit_mark, 0)
  end
end
if os then os.exit = nil end
-- The budget's count hook stays armed (arming and disarming it per run cost more than a
-- whole empty route): on the main thread from the end of this chunk, on each route coroutine
-- from its creation. A run only resets the count, and only the outermost one: a route run by
-- an event callback fired by a KSR call goes on counting. Code run outside any route (a
-- has_function) is never stopped. Hooks are per coroutine in PUC Lua (their table keeps an
-- entry per coroutine: one that is dropped is disarmed), one for all in LuaJIT.
local active = 0
local function on_budget()
  hits = hits + 1
  if hits > budget_steps then
    hits = 0
    if active > 0 then
      error("script exceeded its instruction budget (runaway loop?)", 2)
    end
  end
end
local sethook = debug.sethook
local per_thread = not jit
-- The method of the request the running route is for, as the number LuaEngine.methods gives it
-- (nil for a reply, whose CSeq's is asked of Python, and for a method without a test):
-- KSR.is_INVITE and friends answer from it without crossing into Python. Every entry (run,
-- start, resume) sets it and gives the outer one back at its end.
local cur_method = nil
-- One parameter, not ``...``: a vararg function costs twice as much, and a test takes none (a
-- call with some still gets the binding's error).
function __ksr_method_test(pyfn, m)
  return function(a)
    if a ~= nil then return pyfn(a) end
    if cur_method ~= nil then return cur_method == m end
    return pyfn()
  end
end
-- KSR.dbg and friends: the levels their binding found off and noted here (__ksr_log_off),
-- answered without crossing into Python until a log level changes (__ksr_log_reset, from
-- LuaEngine.levels_changed). Only a string is answered here: anything else gets the
-- binding's conversion or its error. ``...``, not a parameter: KSR.dbg() and KSR.dbg(nil)
-- reach the binding as they were written.
local type = type
local log_off = {}
function __ksr_log_gate(pyfn, level)
  return function(...)
    if log_off[level] then
      local s = ...
      if type(s) == "string" then return false end
    end
    return pyfn(...)
  end
end
function __ksr_log_off(level) log_off[level] = true end
function __ksr_log_reset() log_off = {} end
-- A synchronous run of the route ``name``, as a function of its own per name (LuaEngine asks
-- once per name): the name is a Lua string already, where passing it with every run cost a
-- string made and hashed (~450 instructions).
local function runner(name)
  return function(method, ...)
    local f = _G[name]
    if type(f) ~= "function" then return 2 end
    if active == 0 then hits = 0 end
    active = active + 1
    local outer = cur_method
    cur_method = method
    -- pcall, not xpcall: Lua 5.1's xpcall passes no arguments (a closure and a table per
    -- event callback run), and the error needs no handler (no traceback is kept)
    local ok, err = pcall(f, ...)
    cur_method = outer
    active = active - 1
    if ok or err == exit_mark then return 1 end
    if type(err) ~= "string" then err = tostring(err) end
    return 0, err
  end
end
__ksr_runner = runner
function __ksr_run(name, method, ...) return runner(name)(method, ...) end
-- Request routes run as coroutines, so a KSR call that waits on I/O suspends only its route
-- (docs/suspend.md): the call returns the pending mark, its Lua wrapper yields, Python
-- resumes the coroutine with the answer. Finished coroutines are reused.
local pending_mark = "~~ksr~pending~~"
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local done_mark = {}
local idle, n_idle = {}, 0
local waiting, last_id = {}, 0
local function co_body(f, a1, a2)
  while true do
    f(a1, a2)
    f, a1, a2 = co_yield(done_mark)
  end
end
local function disarm(co)
  if budget_steps > 0 and per_thread then sethook(co) end
end
local function segment_end(co, outer, ok, r)
  cur_method = outer
  active = active - 1
  if not ok then
    disarm(co)
    if r == exit_mark then return 1 end
    if type(r) ~= "string" then r = tostring(r) end
    return 0, r
  end
  if r == done_mark then
    n_idle = n_idle + 1
    idle[n_idle] = co
    return 1
  end
  last_id = last_id + 1
  waiting[last_id] = co
  return 3, last_id
end
function __ksr_start(name, method, a1, a2)
  local f = _G[name]
  if type(f) ~= "function" then return 2 end
  local co
  if n_idle > 0 then
    co = idle[n_idle]
    idle[n_idle] = nil
    n_idle = n_idle - 1
  else
    co = co_create(co_body)
    if budget_steps > 0 and per_thread then sethook(co, on_budget, "", step) end
  end
  hits = 0
  active = active + 1
  local outer = cur_method
  cur_method = method
  return segment_end(co, outer, co_resume(co, f, a1, a2))
end
function __ksr_resume(id, value, method)
  local co = waiting[id]
  waiting[id] = nil
  if co == nil then return 0, "resumed a route that is not waiting" end
  hits = 0
  active = active + 1
  local outer = cur_method
  cur_method = method
  return segment_end(co, outer, co_resume(co, value))
end
function __ksr_drop(id)
  local co = waiting[id]
  waiting[id] = nil
  if co ~= nil then disarm(co) end
end
function __ksr_suspending(pyfn)
  return function(...)
    local r = pyfn(...)
    if r == pending_mark then return co_yield(pending_mark) end
    return r
  end
end
function __ksr_has(name) return type(_G[name]) == "function" end
-- The script's top-level code runs under the same budget: a loop there must not hang a reload.
local plain_pcall = pcall
function __ksr_load(chunk)
  hits = 0
  active = active + 1
  local ok, err = plain_pcall(chunk)
  active = active - 1
  if ok then return true end
  return false, tostring(err)
end
-- PUC Lua 5.1 cannot yield across pcall: inside a route coroutine, pcall and xpcall run
-- their function as a coroutine of its own and pass its waits up.
if not jit and _VERSION == "Lua 5.1" then
  local co_running, co_status = coroutine.running, coroutine.status
  local function relay(co, ok, ...)
    if not ok then return false, ... end
    if co_status(co) == "dead" then return true, ... end
    return relay(co, co_resume(co, co_yield(...)))
  end
  _G.pcall = function(f, ...)
    if co_running() == nil or type(f) ~= "function" then return plain_pcall(f, ...) end
    local co = co_create(f)
    return relay(co, co_resume(co, ...))
  end
  local plain_xpcall = _G.xpcall
  local function handled(handler, ok, ...)
    if ok then return true, ... end
    return false, handler((...))
  end
  _G.xpcall = function(f, handler)
    if co_running() == nil or type(f) ~= "function" then return plain_xpcall(f, handler) end
    local co = co_create(f)
    return handled(handler, relay(co, co_resume(co)))
  end
end
if budget_steps > 0 then sethook(on_budget, "", step) end
"""


class LuaEngine(Engine):
    language = "lua"

    def __init__(self, server: Server, path: Path, registry: ExportRegistry) -> None:
        super().__init__(server, path, registry)
        self.lua: Any = None
        self._run: Any = None
        self._has: Any = None
        self._start: Any = None
        self._resume: Any = None
        self._drop: Any = None
        self._log_reset: Any = None
        # whether a route may wait on I/O (a KSR function that may wait is loaded): else
        # request routes run as plain calls (runs.lua_runner), not as coroutines
        self.routes_wait = True
        # the methods KSR.is_<METHOD> tests, numbered for the Lua side (load)
        self.methods: dict[str, int] = {}

    def load(self) -> None:
        core = self.server.config.core
        modname = RUNTIMES.get(core.lua_runtime)
        if modname is None:
            raise ScriptError(
                f"unknown lua_runtime {core.lua_runtime!r} (use {', '.join(RUNTIMES)})"
            )
        mod = importlib.import_module(modname)
        kwargs: dict[str, Any] = dict(
            unpack_returned_tuples=True, register_eval=False, register_builtins=False
        )
        if core.lua_runtime != "luajit" and core.lua_max_memory > 0:
            kwargs["max_memory"] = core.lua_max_memory
        lua = mod.LuaRuntime(**kwargs)
        try:
            source = self.path.read_text()
        except OSError as err:
            raise ScriptError(f"cannot read script: {err.strerror}", str(self.path)) from None
        except UnicodeDecodeError as err:
            raise ScriptError(
                f"cannot read script: not UTF-8 ({err.reason})", str(self.path)
            ) from None
        g = lua.globals()
        g.python = None
        g.KSR = self._build_ksr(lua)
        steps = 1000
        budget = max(0, core.script_max_instructions // steps)
        lua.execute(_BOOTSTRAP, budget, steps)
        if budget > 0 and core.lua_runtime == "luajit":
            # Count hooks never fire inside LuaJIT's compiled traces, so a runaway loop would
            # escape the budget: with the guard on, LuaJIT runs its (still fast) interpreter.
            lua.execute("jit.off()")
        wrap, ending = g["__ksr_suspending"], g["__ksr_ending"]
        method_test, log_gate = g["__ksr_method_test"], g["__ksr_log_gate"]
        waits = False
        for f in self.registry:
            suspends = may_wait(f)
            waits = waits or (suspends and "lua" in f.engines)
            kind = inline_kind(f) if "lua" in f.engines else None
            if suspends or f.ends_route:
                t = g.KSR[f.submodule] if f.submodule else g.KSR
                t[f.name] = (wrap if suspends else ending)(t[f.name])
            elif kind in ("method", "log") and f.inline is not None:
                t = g.KSR[f.submodule] if f.submodule else g.KSR
                if kind == "method":
                    code = self.methods.setdefault(str(f.inline[1]), len(self.methods) + 1)
                    t[f.name] = method_test(t[f.name], code)
                else:
                    t[f.name] = log_gate(t[f.name], int(f.inline[1]))
        loader = lua.eval("loadstring or load")
        chunk = loader(source, "@" + str(self.path))
        if not callable(chunk) or isinstance(chunk, tuple):
            problem = chunk[1] if isinstance(chunk, tuple) else "syntax error"
            file, line, msg = split_lua_position(str(problem))
            raise ScriptError(f"syntax error: {msg}", str(self.path), line)
        try:
            ran = g["__ksr_load"](chunk)
        except Exception as err:  # lupa.LuaError and friends
            ran = (False, str(err))
        if isinstance(ran, tuple) and not ran[0]:
            file, line, msg = split_lua_position(str(ran[1]))
            raise ScriptError(f"error running the script: {msg}", str(self.path), line)
        self.lua = lua
        self.routes_wait = waits
        self._run = g["__ksr_run"]
        self._has = g["__ksr_has"]
        self._start = g["__ksr_start"]
        self._resume = g["__ksr_resume"]
        self._drop = g["__ksr_drop"]
        self._log_reset = g["__ksr_log_reset"]
        if log_levels.watch(log, self):  # else KSR.dbg and friends always ask Python
            self.state.log_off = g["__ksr_log_off"]
        self.run = lua_runner(  # type: ignore[method-assign]
            self, g["__ksr_runner"], self.methods
        )
        self.loaded_at = time.time()
        rr = self.server.config.core.kemi.request_route_callback
        if not self.has_function(rr):
            raise ScriptError(f"no function {rr}() (the request route) is defined", str(self.path))

    def _build_ksr(self, lua: Any) -> Any:
        top: dict[str, Any] = {}
        for sub in self.registry.submodules():
            funcs = {
                name: make_binding(f, self, lua=True)
                for name, f in self.registry.functions[sub].items()
                if "lua" in f.engines
            }
            if sub == "":
                top.update(funcs)
            else:
                top[sub] = lua.table_from(funcs)
        return lua.table_from(top)

    def has_function(self, name: str) -> bool:
        return bool(self._has(name)) if self._has is not None else False

    def levels_changed(self) -> None:
        """A log level changed (log_levels.watch): the Lua side forgets the levels it knew
        to be off."""
        self._log_reset()

    def to_script(self, value: Any) -> Any:
        """Lists and dicts (nested) as Lua tables: never hand Lua a wrapped Python object."""
        if isinstance(value, dict):
            return self.lua.table_from({k: self.to_script(v) for k, v in value.items()})
        if isinstance(value, list):
            return self.lua.table_from([self.to_script(v) for v in value])
        return value

    def run(self, ctx: MsgContext, name: str, arg: Any = ABSENT) -> int:
        """A synchronous run (nested routes, events, reply routes): never suspends. load()
        puts the compiled ``runs.lua_runner`` in this method's place on the instance (a
        frame less per run); this one answers for an engine that is not loaded."""
        log.error("%s: %s failed: the script is not loaded", self.path, name)
        return 0

    def start(
        self,
        ctx: MsgContext,
        name: str,
        args: tuple[Any, ...],
        done: Callable[[MsgContext, int], None],
    ) -> int | None:
        """Run a route as a coroutine: its result, or None when it waits on I/O (then
        ``done(ctx, rc)`` is called when it finishes)."""
        if not self.routes_wait:  # nothing can wait: a plain run (a coroutine costs ~1.5k)
            return self.run(ctx, name, *args) if args else self.run(ctx, name)
        # _swap, inline: every run; the fields themselves, not the Engine.ctx/suspendable
        # properties (an interpreted frame each)
        state = self.state
        prev_ctx, prev_suspendable = state.ctx, state.suspendable
        state.ctx = ctx
        state.suspendable = True
        m = ctx.msg
        # for KSR.is_INVITE and friends: a number (a Lua string is hashed as it is made)
        method = self.methods.get(m.method) if type(m) is Request else None
        try:
            # no splat
            result = self._start(name, method, *args) if args else self._start(name, method)
        except Exception as err:
            log.error("%s: %s failed: %s", self.path, name, err)
            return 0
        finally:
            state.ctx, state.suspendable = prev_ctx, prev_suspendable
        if result == 1:  # done (the usual answer: no tuple, nothing to report)
            return 1
        if type(result) is tuple and result[0] == 3:
            s, self.pending = self.pending, None
            if s is None:  # the script yielded by itself: nothing to wait for
                self._drop(result[1])
                log.error("%s: %s() called coroutine.yield outside a coroutine", self.path, name)
                return 0
            self.server.runner.spawn(self._complete, ctx, name, result[1], s, done)
            return None
        return self.report(name, result)

    async def _complete(
        self,
        ctx: MsgContext,
        name: str,
        co_id: int,
        s: Suspension,
        done: Callable[[MsgContext, int], None],
    ) -> None:
        runner = self.server.runner
        while True:
            try:
                fin = await runner.complete(s, lambda: self._swap(ctx, False), self._unswap)
            except BaseException:
                self._drop(co_id)  # cancelled (stopping): the coroutine is freed, not resumed
                raise
            value = fin.result.value if isinstance(fin.result, Value) else False
            token = self._swap(ctx, True)
            m = ctx.msg
            try:
                method = self.methods.get(m.method) if type(m) is Request else None
                result = self._resume(co_id, value, method)
            except Exception as err:
                log.error("%s: %s failed: %s", self.path, name, err)
                result = 0
            finally:
                self._unswap(token)
            if type(result) is tuple and result[0] == 3:
                co_id = result[1]
                s, self.pending = self.pending, None  # type: ignore[assignment]
                if s is None:
                    self._drop(co_id)
                    done(ctx, 0)
                    return
                continue
            done(ctx, self.report(name, result))
            return

    def _swap(self, ctx: MsgContext, suspendable: bool) -> tuple[MsgContext | None, bool]:
        state = self.state
        token = (state.ctx, state.suspendable)
        state.ctx = ctx
        state.suspendable = suspendable
        return token

    def _unswap(self, token: tuple[MsgContext | None, bool]) -> None:
        self.state.ctx, self.state.suspendable = token

    def report(self, name: str, result: Any) -> int:
        if isinstance(result, tuple):
            code, message = result[0], result[1]
        else:
            code, message = result, None
        if code == 0:
            file, line, msg = split_lua_position(str(message))
            if file and file.startswith("...") and str(self.path).endswith(file[3:]):
                file = str(self.path)  # Lua shortens long chunk names to their tail
            where = f"{file}:{line}" if line else str(self.path)
            log.error("%s: error in %s(): %s", where, name, msg)
        return int(code)


__all__ = ["EXIT_MARK", "LuaEngine"]
