"""Timer service for modules: periodic and one-shot callbacks on trio's (injectable) clock."""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

log = logging.getLogger("ksr.timers")


@dataclass(order=True, slots=True)
class _Entry:
    deadline: float
    seq: int
    handle: TimerHandle = field(compare=False)


class TimerHandle:
    __slots__ = ("callback", "interval", "cancelled")

    def __init__(self, callback: Callable[[], object], interval: float | None) -> None:
        self.callback = callback
        self.interval = interval
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerService:
    """Callbacks run in the timer task, one at a time, never concurrently with a message."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._wakeup = trio.Event()

    def _push(self, deadline: float, handle: TimerHandle) -> None:
        heapq.heappush(self._heap, _Entry(deadline, next(self._seq), handle))
        if self._heap[0].handle is handle:
            self._wakeup.set()

    def once(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        h = TimerHandle(callback, None)
        self._push(trio.current_time() + delay, h)
        return h

    def every(self, interval: float, callback: Callable[[], object]) -> TimerHandle:
        if interval <= 0:
            raise ValueError("timer interval must be positive")
        h = TimerHandle(callback, interval)
        self._push(trio.current_time() + interval, h)
        return h

    def run_due(self, now: float) -> None:
        while self._heap and self._heap[0].deadline <= now:
            entry = heapq.heappop(self._heap)
            h = entry.handle
            if h.cancelled:
                continue
            try:
                h.callback()
            except Exception:
                log.exception("timer callback %r failed", h.callback)
            if h.interval is not None and not h.cancelled:
                self._push(entry.deadline + h.interval, h)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wakeup = trio.Event()
            now = trio.current_time()
            self.run_due(now)
            if self._heap:
                with trio.move_on_at(self._heap[0].deadline):
                    await self._wakeup.wait()
            else:
                await self._wakeup.wait()
