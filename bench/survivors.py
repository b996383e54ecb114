"""What an anchor call leaves for the garbage collector to walk.

1. Census: the objects the collector tracks (containers) that a call leaves alive, by type,
   while its transactions and dialog wait out their timers (tm's wt_timer, the dialog's
   linger). The clock advances 1 ms per call here, so nothing the measured calls made has
   expired when they are counted.
2. ``--steady N``: N more calls at ``--rate`` calls/s of virtual time after a warm-up long
   enough that transactions expire as fast as calls make them (the state of a server that
   has run for a while), counting the objects each collection walks (the sizes of the
   generations it collects, read when it starts) and the time it takes.

The collector's cost per call follows the survivors: a collection walks each object still
alive in the generations it collects, and here nearly every walk finds nothing to free (tm
breaks its cycles), so it is all overhead. The counts are deterministic (same calls, same
hash seed, mock clock); the times are not.

    python -m bench.survivors [--calls 400] [--top 25] [--steady 6000 --rate 1000]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio.testing

from ksr.core.gcpolicy import tune_for_serving

from .anchor_inproc import anchor_setup, register_user
from .inproc import make_server, run_trio
from .profile_calls import CALLEE, play_call


def census() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


class Walks:
    """Objects in the generations each collection walks, and its time."""

    def __init__(self) -> None:
        self.walked = 0
        self.runs: Counter[int] = Counter()
        self.seconds = 0.0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gen = info["generation"]
            self.runs[gen] += 1
            self.walked += sum(len(gc.get_objects(g)) for g in range(gen + 1))
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--steady", type=int, default=0, help="calls counted in the steady state")
    ap.add_argument("--rate", type=float, default=1000.0, help="calls/s of virtual time")
    args = ap.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":
        print("(PYTHONHASHSEED=0 makes the counts repeat exactly)")
    script, config = anchor_setup(Path(tempfile.mkdtemp(prefix="ksr-surv-")))
    server, wire, sock = make_server(script, config)
    tune_for_serving(server.config.core.gc_threshold)

    async def body(clock: trio.testing.MockClock) -> None:
        register_user(server, wire, sock, "bob", CALLEE)
        n = 0

        async def calls(count: int, step: float) -> None:
            nonlocal n
            for _ in range(count):
                play_call(server, wire, sock, n)
                n += 1
                clock.jump(step)
                await trio.sleep(0)

        await calls(args.warmup, 0.001)
        before = census()
        await calls(args.calls, 0.001)
        delta = census() - before
        print(f"tracked objects a call leaves alive: {sum(delta.values()) / args.calls:.1f}")
        for name, k in delta.most_common(args.top):
            print(f"  {k / args.calls:6.2f}  {name}")
        if args.steady:
            step = 1.0 / args.rate
            wait = server.module("tm").params.wt_timer / 1000.0
            await calls(int(wait * args.rate * 1.5) + 100, step)  # past every wait timer
            walks = Walks()
            gc.callbacks.append(walks)
            try:
                await calls(args.steady, step)
            finally:
                gc.callbacks.remove(walks)
            print(
                f"steady state at {args.rate:g} calls/s: the collector walked "
                f"{walks.walked / args.steady:.1f} objects per call "
                f"({dict(sorted(walks.runs.items()))} collections by generation), "
                f"{walks.seconds / args.steady * 1e6:.1f} us per call"
            )

    run_trio(server, body)


if __name__ == "__main__":
    main()
