"""Log lines that peers can cause (malformed input, failed parses), bounded.

A sender that floods malformed messages must not flood the log: at most ``burst`` lines per
``interval`` seconds get through; the rest are counted and the count is reported with the
next line that does. One line each, never a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 10,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self.window_start = -interval
        self.sent = 0
        self.left_out = 0

    def log(self, level: int, msg: str, *args: object) -> bool:
        """Log one line if the budget allows; True if it was written."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        if now - self.window_start >= self.interval:
            self.window_start, self.sent = now, 0
        if self.sent >= self.burst:
            self.left_out += 1
            return False
        self.sent += 1
        if self.left_out:
            msg += " (%d similar lines left out)"
            args = (*args, self.left_out)
            self.left_out = 0
        self.logger.log(level, msg, *args)
        return True

    def warning(self, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, msg, *args)

    def info(self, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, msg, *args)
