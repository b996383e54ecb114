"""Per-call cost of a KSR function from Lua on each runtime lupa offers, with the runaway
guard (instruction budget) on and off. Picks the default ``core.lua_runtime``.

    python -m bench.lua_runtimes [--calls 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ksr.core.config import Config
from ksr.core.server import Server

SCRIPT = """
function ksr_request_route() end
function bench(n)
  local n = tonumber(n)
  local hits = 0
  for i = 1, n do
    if KSR.is_OPTIONS() then hits = hits + 1 end
  end
  return hits
end
function bench_lua(n)
  local n = tonumber(n)
  local s = 0
  for i = 1, n do s = s + (i % 7) end
  return s
end
"""


def per_call(runtime: str, budget: int, calls: int, route: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "b.lua"
        script.write_text(SCRIPT)
        cfg = Config.model_validate(
            {
                "loadmodule": ["sl"],
                "core": {
                    "listen": ["udp:127.0.0.1:0"],
                    "lua_runtime": runtime,
                    "script_max_instructions": budget,
                },
            }
        )
        server = Server(cfg, script)
        engine = server.load_script()
        ctx = server.faked_context()
        engine.run(ctx, route, str(1000))  # warm up
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            engine.run(ctx, route, str(calls))
            best = min(best, time.perf_counter() - t0)
        return best / calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    args = ap.parse_args()
    print(f"{'runtime':8} {'guard':6} {'KSR call':>10} {'pure Lua iteration':>20}")
    for runtime in ("lua51", "luajit", "lua54"):
        for budget in (10**12, 0):
            ksr = per_call(runtime, budget, args.calls, "bench")
            pure = per_call(runtime, budget, args.calls * 10, "bench_lua")
            print(
                f"{runtime:8} {'on' if budget else 'off':6} {ksr * 1e6:8.3f} us {pure * 1e9:15.1f} ns"
            )


if __name__ == "__main__":
    main()
