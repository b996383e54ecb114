"""OPTIONS answered by the routing script: the highest rate with zero failures.

python -m bench.run [--script scripts/default.lua] [--calls 5000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import REPO, SIPP_DIR, cpu_seconds, find_max_rate, ksr_server, sipp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", default=str(REPO / "scripts" / "default.lua"))
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--rates", default="1000,2000,4000,6000,8000,10000,12000,15000,20000")
    ap.add_argument("--config", default="")
    args = ap.parse_args()
    rates = [int(x) for x in args.rates.split(",")]
    config = Path(args.config).read_text() if args.config else ""
    print(f"OPTIONS through {args.script}")
    with ksr_server(Path(args.script), config) as (port, proc):

        def run_at(rate: int) -> tuple[int, int]:
            n = min(args.calls, rate * 3)
            before = cpu_seconds(proc.pid)
            ok, failed, out = sipp(
                [
                    "-sf",
                    str(SIPP_DIR / "options.xml"),
                    f"127.0.0.1:{port}",
                    "-m",
                    str(n),
                    "-r",
                    str(rate),
                    "-l",
                    str(max(rate, 1000)),
                    "-i",
                    "127.0.0.1",
                ],
                timeout=60,
            )
            used = cpu_seconds(proc.pid) - before
            if ok:
                print(
                    f"    ksr CPU {used / ok * 1e6:.0f} us per OPTIONS ({ok / used if used else 0:.0f}/s per core)"
                )
            return ok, failed

        best, _ = find_max_rate(run_at, rates)
    print(f"highest OPTIONS rate with zero failures: {best}/s")


if __name__ == "__main__":
    main()
