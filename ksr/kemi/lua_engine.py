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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine import EXIT_MARK, Engine, ScriptError, make_binding, split_lua_position
from .registry import ExportRegistry

if TYPE_CHECKING:
    from ksr.core.context import MsgContext
    from ksr.core.server import Server

log = logging.getLogger("ksr.script")

RUNTIMES = {"lua51": "lupa.lua51", "luajit": "lupa.luajit21", "lua54": "lupa.lua54"}

_BOOTSTRAP = r"""
local budget_steps, step = ...
local hits = 0
local exit_mark = "~~ksr~exit~~"
KSRVERSION = "2.0"
KSR.x = {
  exit = function() error(exit_mark, 0) end,
  drop = function() KSR.set_drop() error(exit_mark, 0) end,
  probe = function() end,
  modf = function() return -1 end,
}
if os then os.exit = nil end
local function on_budget()
  hits = hits + 1
  if hits > budget_steps then
    hits = 0
    error("script exceeded its instruction budget (runaway loop?)", 2)
  end
end
local function tb(err)
  if err == exit_mark then return err end
  if type(err) ~= "string" then err = tostring(err) end
  return err
end
-- A route may run another one (an event callback fired by a KSR call): the budget covers
-- the outermost run, so only depth 0 arms and disarms the hook.
local depth = 0
function __ksr_run(name, ...)
  local f = _G[name]
  if type(f) ~= "function" then return 2 end
  if depth == 0 then
    hits = 0
    if budget_steps > 0 then debug.sethook(on_budget, "", step) end
  end
  depth = depth + 1
  local ok, err = xpcall(f, tb, ...)
  depth = depth - 1
  if depth == 0 and budget_steps > 0 then debug.sethook() end
  if ok or err == exit_mark then return 1 end
  return 0, err
end
function __ksr_has(name) return type(_G[name]) == "function" end
-- The script's top-level code runs under the same budget: a loop there must not hang a reload.
function __ksr_load(chunk)
  hits = 0
  if budget_steps > 0 then debug.sethook(on_budget, "", step) end
  local ok, err = pcall(chunk)
  if budget_steps > 0 then debug.sethook() end
  if ok then return true end
  return false, tostring(err)
end
"""

# Lua 5.1's xpcall passes no arguments: wrap them in a closure, but only when there are
# some (a request route has none, and the table and closure cost every message).
_BOOTSTRAP_51 = _BOOTSTRAP.replace(
    "local ok, err = xpcall(f, tb, ...)",
    "local ok, err\n"
    "  local n = select('#', ...)\n"
    "  if n == 0 then ok, err = xpcall(f, tb) else\n"
    "    local args = {...}\n"
    "    ok, err = xpcall(function() return f(unpack(args, 1, n)) end, tb)\n"
    "  end",
)


class LuaEngine(Engine):
    language = "lua"

    def __init__(self, server: Server, path: Path, registry: ExportRegistry) -> None:
        super().__init__(server, path, registry)
        self.lua: Any = None
        self._run: Any = None
        self._has: Any = None

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
        boot = _BOOTSTRAP_51 if lua.lua_version == (5, 1) else _BOOTSTRAP
        lua.execute(boot, budget, steps)
        if budget > 0 and core.lua_runtime == "luajit":
            # Count hooks never fire inside LuaJIT's compiled traces, so a runaway loop would
            # escape the budget: with the guard on, LuaJIT runs its (still fast) interpreter.
            lua.execute("jit.off()")
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
        self._run = g["__ksr_run"]
        self._has = g["__ksr_has"]
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
            }
            if sub == "":
                top.update(funcs)
            else:
                top[sub] = lua.table_from(funcs)
        return lua.table_from(top)

    def has_function(self, name: str) -> bool:
        return bool(self._has(name)) if self._has is not None else False

    def to_script(self, value: Any) -> Any:
        """Lists and dicts (nested) as Lua tables: never hand Lua a wrapped Python object."""
        if isinstance(value, dict):
            return self.lua.table_from({k: self.to_script(v) for k, v in value.items()})
        if isinstance(value, list):
            return self.lua.table_from([self.to_script(v) for v in value])
        return value

    def run(self, ctx: MsgContext, name: str, *args: Any) -> int:
        prev = self.ctx
        self.ctx = ctx
        try:
            result = self._run(name, *args)
        except Exception as err:
            log.error("%s: %s failed: %s", self.path, name, err)
            return 0
        finally:
            self.ctx = prev
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
