"""Wall-clock time that advances with trio's clock.

Dialog times (INVITE, answer, end) are wall-clock timestamps, while their timeouts run on trio's
clock. Deriving one from the other keeps durations and timeouts consistent (and lets tests run
hours of calls instantly on trio's MockClock)."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio


class WallClock:
    def __init__(self, trio_now: Callable[[], float] = trio.current_time) -> None:
        self._trio_now = trio_now  # the server's TimerService.now: one call less than trio's
        self._base: tuple[float, float] | None = None

    def now(self) -> float:
        try:
            t = self._trio_now()
        except RuntimeError:  # outside trio (synchronous tools)
            return time.time()
        return self.at(t)

    def at(self, t: float) -> float:
        """The wall-clock time of trio time ``t``."""
        if self._base is None:
            self._base = (time.time(), t)
        return self._base[0] + (t - self._base[1])

    def delay_until(self, wall_ts: float) -> float:
        """Seconds of trio time until a wall-clock moment (0 if past)."""
        return max(0.0, wall_ts - self.now())
