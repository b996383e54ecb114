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
from typing import Any

import trio

log = logging.getLogger("ksr.timers")


class TimerHandle:
    __slots__ = ("callback", "interval", "cancelled", "_name", "_service")

    def __init__(
        self, callback: Callable[[], object], interval: float | None, name: str, service: TimerService | None = None
    ) -> None:
        self.callback: Callable[[], object] | None = callback
        self.interval = interval
        self.cancelled = False
        self._name = name  # "" = the callback's own name, worked out only when a log needs it
        self._service = service

    @property
    def name(self) -> str:
        return self._name or (_name(self.callback) if self.callback is not None else "cancelled")

    def cancel(self) -> None:
        """Stop the timer; a cancelled one-shot never runs, a periodic one never runs again."""
        if self.cancelled:
            return
        self.cancelled = True
        self._name = self.name
        self.callback = None  # what it would have run (a transaction...) can be freed now
        if self._service is not None:  # set while the handle waits on the heap
            self._service._dead += 1
            self._service = None


class TimerService:
    """Timers on a heap of ``(deadline, seq, handle)`` tuples (compared in C, no Python
    ``__lt__``). Cancelled entries stay until their deadline, unless they come to outnumber
    the live ones: then the heap is rebuilt without them (tm cancels nearly every timer it
    starts, and a transaction lifetime guard runs minutes)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._dead = 0  # cancelled handles still on the heap
        self.failures = 0  # callbacks that raised (logged, the service carries on)

    def __len__(self) -> int:
        return sum(1 for e in self._heap if not e[2].cancelled)

    def next_deadline(self) -> float | None:
        """When the earliest timer (live or cancelled) is due, or None."""
        return self._heap[0][0] if self._heap else None

    def _push(self, deadline: float, handle: TimerHandle) -> None:
        heap = self._heap
        if self._dead > 1024 and self._dead * 2 > len(heap):
            self._compact()
        heapq.heappush(heap, (deadline, next(self._seq), handle))
        if heap[0][2] is handle:
            self._wakeup.set()

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if not e[2].cancelled]
        heapq.heapify(self._heap)
        self._dead = 0

    def once(self, delay: float, callback: Callable[[], object], name: str = "") -> TimerHandle:
        """Run ``callback`` once, ``delay`` seconds from now."""
        h = TimerHandle(callback, None, name, self)
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
        h = TimerHandle(callback, interval, name, self)
        self._push(trio.current_time() + (interval if first is None else max(first, 0.0)), h)
        return h

    def run_due(self, now: float) -> None:
        """Run every callback whose deadline has come, in deadline order (FIFO on ties)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, h = heapq.heappop(heap)
            if h.cancelled:
                self._dead -= 1
                continue
            h._service = None  # off the heap while it runs
            if h.interval is None:
                h.cancelled = True  # done: a later cancel() is a no-op
            self._call(h)
            if h.interval is None:
                h.callback = None
            elif not h.cancelled:
                h._service = self
                nxt = deadline + h.interval
                if nxt <= now:  # overran: skip the missed ticks, stay on the same grid
                    nxt += math.ceil((now - nxt) / h.interval + 1e-9) * h.interval
                    if nxt <= now:
                        nxt += h.interval
                self._push(nxt, h)
            heap = self._heap  # a callback may have compacted it

    def _call(self, h: TimerHandle) -> None:
        cb = h.callback
        if cb is None:
            return
        try:
            result: Any = cb()
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
                        with trio.move_on_at(self._heap[0][0]):
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
