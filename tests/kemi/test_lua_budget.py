"""The Lua instruction budget: its count hook stays armed, each outermost run starts afresh."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from ksr.kemi.lua_engine import _BOOTSTRAP, RUNTIMES

SCRIPT = """
function spin() while true do end end
function short() local x = 0 for i = 1, 20000 do x = x + i end return 1 end
function outer() RESULTS = {KSR_RUN("short"), KSR_RUN("short"), (KSR_RUN("short"))} end
"""


def runtime(name: str) -> Any:
    mod = importlib.import_module(RUNTIMES[name])
    lua = mod.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    lua.execute(_BOOTSTRAP, 100, 1000)  # 100 steps of 1000 instructions
    if name == "luajit":
        lua.execute("jit.off()")
    lua.execute(SCRIPT)
    return lua


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_budget_stops_a_runaway_and_resets_per_run(name: str) -> None:
    lua = runtime(name)
    g = lua.globals()
    run, start, has = g["__ksr_run"], g["__ksr_start"], g["__ksr_has"]
    for call in (run, start):
        rc = call("spin")
        assert rc[0] == 0
        assert "instruction budget" in rc[1]
        # ~40k instructions each: under the budget every time, the count starts again
        assert [call("short") for _ in range(20)] == [1] * 20
    # code run outside any route is never stopped, however long between runs
    for _ in range(30000):
        assert has("short")
    assert run("short") == 1


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_nested_run_counts_toward_the_outer_one(name: str) -> None:
    lua = runtime(name)
    g = lua.globals()
    g.KSR_RUN = g["__ksr_run"]
    # each run of short() fits alone; in one outer run, the third goes past the budget
    # (~120k instructions) and fails (its own run's error: 0)
    assert g["__ksr_run"]("outer") == 1
    assert list(g.RESULTS.values()) == [1, 1, 0]
    assert g["__ksr_run"]("short") == 1
