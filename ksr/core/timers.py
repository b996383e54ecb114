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


COARSE_HZ = 16  # the grid of coarse timers (TimerService.once): 1/16 s, Kamailio's timer tick

# Slots of a TimerHandle (a list, see below).
_DEADLINE, _SEQ, _CALLBACK, _ARGS, _INTERVAL, _NAME, _SERVICE = range(7)


class TimerHandle(list):
    """One timer, and its own heap entry: ``[deadline, seq, callback, args, interval, name,
    service]``. Being a list (the heapq documentation's pattern) makes heap order a C
    comparison of (deadline, seq) and costs one object per timer: tm starts a dozen timers
    per call, and the garbage collector walks each of them for as long as it lives."""

    __slots__ = ()

    @property
    def callback(self) -> Callable[..., object] | None:
        return self[_CALLBACK]

    @property
    def interval(self) -> float | None:
        return self[_INTERVAL]

    @property
    def cancelled(self) -> bool:
        return self[_CALLBACK] is None

    @property
    def name(self) -> str:
        cb = self[_CALLBACK]
        return self[_NAME] or (_name(cb) if cb is not None else "cancelled")

    def cancel(self) -> None:
        """Stop the timer; a cancelled one-shot never runs, a periodic one never runs again."""
        if self[_CALLBACK] is None:
            return
        self[_CALLBACK] = None  # what it would have run (a transaction...) can be freed now
        self[_ARGS] = ()
        service = self[_SERVICE]
        if service is not None:  # set while the handle waits on the heap
            service.cancelled_on_heap += 1
            self[_SERVICE] = None


class TimerService:
    """Timers on a heap of TimerHandles. A cancelled timer stays on the heap until its
    deadline, unless cancelled ones come to outnumber the live ones: then the heap is rebuilt
    without them (tm cancels nearly every timer it starts, and its transaction lifetime guard
    runs for minutes)."""

    def __init__(self) -> None:
        self._heap: list[TimerHandle] = []
        self._seq = itertools.count()
        # While the timer task sleeps: its cancel scope and the deadline that scope has. A new
        # timer due earlier moves that deadline (trio's deadline heap, no wake-up of the task);
        # -inf while the task runs (it reads the heap before it sleeps again) or is not started
        self._sleep: trio.CancelScope | None = None
        self._armed = -math.inf
        self._nursery: trio.Nursery | None = None
        self.cancelled_on_heap = 0  # cancelled handles still on the heap (counted by them)
        self.failures = 0  # callbacks that raised (logged, the service carries on)
        self.wakeups = 0  # times the timer task woke up (each is a pass of trio's scheduler)
        # the run's clock, read directly while the timer task runs: trio.current_time() goes
        # through two more calls, and a call asks for the time ~25 times
        self._clock: Callable[[], float] | None = None

    def now(self) -> float:
        """trio's current time (the clock the deadlines are on)."""
        clock = self._clock
        return clock() if clock is not None else trio.current_time()

    def __len__(self) -> int:
        return sum(1 for h in self._heap if h[_CALLBACK] is not None)

    def next_deadline(self) -> float | None:
        """When the earliest timer (live or cancelled) is due, or None."""
        return self._heap[0][_DEADLINE] if self._heap else None

    def _push(self, handle: TimerHandle) -> None:
        heap = self._heap
        if self.cancelled_on_heap > 1024 and self.cancelled_on_heap * 2 > len(heap):
            self._compact()
            heap = self._heap
        handle[_SERVICE] = self
        heapq.heappush(heap, handle)
        deadline = handle[_DEADLINE]
        if deadline < self._armed:
            self._rearm(deadline)

    def _rearm(self, deadline: float) -> None:
        """The sleeping timer task is to wake at ``deadline`` (earlier than now planned)."""
        self._armed = deadline
        sleep = self._sleep
        if sleep is not None:
            sleep.deadline = deadline

    def _compact(self) -> None:
        self._heap = [h for h in self._heap if h[_CALLBACK] is not None]
        heapq.heapify(self._heap)
        self.cancelled_on_heap = 0

    def once(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        name: str = "",
        coarse: bool = False,
    ) -> TimerHandle:
        """Run ``callback(*args)`` once, ``delay`` seconds from now (args rather than a
        closure: fewer objects per timer). tm starts a dozen per call: _push is inlined.

        ``coarse``: a delay of a second or more may run up to 1/16 s late: its deadline is
        rounded up to the 1/16 s grid, so such timers (a transaction's wait and give-up
        timers, a dialog's timeouts) fall due together and cost the timer task one wake-up
        per grid step however many calls started them; shorter delays stay exact. Timers due
        in the same step run in the order they were started."""
        heap = self._heap
        if self.cancelled_on_heap > 1024 and self.cancelled_on_heap * 2 > len(heap):
            self._compact()
            heap = self._heap
        clock = self._clock
        deadline = (clock() if clock is not None else trio.current_time()) + (
            delay if delay > 0.0 else 0.0
        )
        if coarse and delay >= 1.0:
            deadline = math.ceil(deadline * COARSE_HZ) / COARSE_HZ
        h = TimerHandle(
            (
                deadline,
                next(self._seq),
                callback,
                args,
                None,
                name,
                self,
            )
        )
        heapq.heappush(heap, h)
        if deadline < self._armed:
            self._rearm(deadline)
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
        deadline = self.now() + (interval if first is None else max(first, 0.0))
        h = TimerHandle((deadline, next(self._seq), callback, (), interval, name, None))
        self._push(h)
        return h

    def _drop_cancelled_heads(self) -> None:
        """Take cancelled timers off the top of the heap, so the timer task sleeps until the
        first live deadline: tm and dialog cancel most timers (Timer B, C, F, the dialog's
        early and no-ACK timeouts...) long before they are due, and each would otherwise
        wake the task once for nothing."""
        heap = self._heap
        while heap and heap[0][_CALLBACK] is None:
            heapq.heappop(heap)
            self.cancelled_on_heap -= 1

    def run_due(self, now: float) -> None:
        """Run every callback whose deadline has come, in deadline order (FIFO on ties)."""
        heap = self._heap
        while heap and heap[0][_DEADLINE] <= now:
            h = heapq.heappop(heap)
            cb = h[_CALLBACK]
            if cb is None:
                self.cancelled_on_heap -= 1
                continue
            h[_SERVICE] = None  # off the heap while it runs
            interval = h[_INTERVAL]
            if interval is None:  # a one-shot is done: a later cancel() is a no-op
                args, h[_CALLBACK], h[_ARGS] = h[_ARGS], None, ()
                self._call(h, cb, args)
            else:
                self._call(h, cb, ())
                if h[_CALLBACK] is not None:  # not cancelled by its own run
                    nxt = h[_DEADLINE] + interval
                    if nxt <= now:  # overran: skip the missed ticks, stay on the same grid
                        nxt += math.ceil((now - nxt) / interval + 1e-9) * interval
                        if nxt <= now:
                            nxt += interval
                    h[_DEADLINE], h[_SEQ] = nxt, next(self._seq)
                    self._push(h)
            heap = self._heap  # a callback may have compacted it

    def _call(self, h: TimerHandle, cb: Callable[..., object], args: tuple[Any, ...]) -> None:
        try:
            result: Any = cb(*args)
        except Exception:
            self.failures += 1
            log.exception("timer %s failed", h[_NAME] or _name(cb))
            return
        if inspect.isawaitable(result):
            if self._nursery is None:
                _close(result)
                log.error(
                    "timer %s returned an awaitable but the timer task is not running",
                    h[_NAME] or _name(cb),
                )
                return
            self._nursery.start_soon(self._await, h[_NAME] or _name(cb), result)

    async def _await(self, name: str, aw: Awaitable[object]) -> None:
        try:
            await aw
        except Exception:
            self.failures += 1
            log.exception("timer %s failed", name)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._clock = trio.lowlevel.current_clock().current_time
            task_status.started()
            try:
                while True:
                    self.wakeups += 1
                    self.run_due(self._clock())
                    self._drop_cancelled_heads()
                    # sleep until the earliest live deadline; a timer started meanwhile that is
                    # due earlier moves the scope's deadline (once/_push): no wake-up for it
                    armed = self._heap[0][_DEADLINE] if self._heap else math.inf
                    with trio.CancelScope(deadline=armed) as sleep:
                        self._sleep, self._armed = sleep, armed
                        try:
                            await trio.sleep_forever()
                        finally:
                            self._sleep, self._armed = None, -math.inf
            finally:
                self._nursery = None
                self._clock = None


def _name(cb: Callable[..., object]) -> str:
    return getattr(cb, "__qualname__", None) or repr(cb)


def _close(aw: Any) -> None:
    close = getattr(aw, "close", None)
    if close is not None:
        close()
