"""Timer service for modules: periodic and one-shot callbacks on trio's (injectable) clock.

Callbacks run in the timer task, one at a time, between messages. A callback that returns an
awaitable (an ``async def``) is started as its own task so a slow one cannot hold up the others.
Periodic timers re-arm from their planned deadline, not from when they ran, so they do not
drift; ticks missed while the process was busy are skipped rather than run in a burst.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

log = logging.getLogger("ksr.timers")


@dataclass(order=True, slots=True)
class _Entry:
    deadline: float
    seq: int
    handle: TimerHandle = field(compare=False)


class TimerHandle:
    __slots__ = ("callback", "interval", "cancelled", "name")

    def __init__(self, callback: Callable[[], object], interval: float | None, name: str) -> None:
        self.callback = callback
        self.interval = interval
        self.cancelled = False
        self.name = name

    def cancel(self) -> None:
        """Stop the timer; a cancelled one-shot never runs, a periodic one never runs again."""
        self.cancelled = True


class TimerService:
    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.failures = 0  # callbacks that raised (logged, the service carries on)

    def __len__(self) -> int:
        return sum(1 for e in self._heap if not e.handle.cancelled)

    def _push(self, deadline: float, handle: TimerHandle) -> None:
        heapq.heappush(self._heap, _Entry(deadline, next(self._seq), handle))
        if self._heap[0].handle is handle:
            self._wakeup.set()

    def once(self, delay: float, callback: Callable[[], object], name: str = "") -> TimerHandle:
        """Run ``callback`` once, ``delay`` seconds from now."""
        h = TimerHandle(callback, None, name or _name(callback))
        self._push(trio.current_time() + max(delay, 0.0), h)
        return h

    def every(
        self,
        interval: float,
        callback: Callable[[], object],
        name: str = "",
        first: float | None = None,
    ) -> TimerHandle:
        """Run ``callback`` every ``interval`` seconds; the first run after ``first`` seconds
        (default: one interval)."""
        if not interval > 0 or math.isinf(interval):
            raise ValueError("timer interval must be a positive number of seconds")
        h = TimerHandle(callback, interval, name or _name(callback))
        self._push(trio.current_time() + (interval if first is None else max(first, 0.0)), h)
        return h

    def run_due(self, now: float) -> None:
        """Run every callback whose deadline has come, in deadline order (FIFO on ties)."""
        while self._heap and self._heap[0].deadline <= now:
            entry = heapq.heappop(self._heap)
            h = entry.handle
            if h.cancelled:
                continue
            self._call(h)
            if h.interval is not None and not h.cancelled:
                nxt = entry.deadline + h.interval
                if nxt <= now:  # overran: skip the missed ticks, stay on the same grid
                    nxt += math.ceil((now - nxt) / h.interval + 1e-9) * h.interval
                    if nxt <= now:
                        nxt += h.interval
                self._push(nxt, h)

    def _call(self, h: TimerHandle) -> None:
        try:
            result: Any = h.callback()
        except Exception:
            self.failures += 1
            log.exception("timer %s failed", h.name)
            return
        if inspect.isawaitable(result):
            if self._nursery is None:
                _close(result)
                log.error(
                    "timer %s returned an awaitable but the timer task is not running", h.name
                )
                return
            self._nursery.start_soon(self._await, h, result)

    async def _await(self, h: TimerHandle, aw: Awaitable[object]) -> None:
        try:
            await aw
        except Exception:
            self.failures += 1
            log.exception("timer %s failed", h.name)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    self._wakeup = trio.Event()
                    self.run_due(trio.current_time())
                    if self._heap:
                        with trio.move_on_at(self._heap[0].deadline):
                            await self._wakeup.wait()
                    else:
                        await self._wakeup.wait()
            finally:
                self._nursery = None


def _name(cb: Callable[[], object]) -> str:
    return getattr(cb, "__qualname__", None) or repr(cb)


def _close(aw: Any) -> None:
    close = getattr(aw, "close", None)
    if close is not None:
        close()
