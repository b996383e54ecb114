"""Timer service for modules: periodic and one-shot callbacks on trio's (injectable) clock.

Callbacks run in the timer task, one at a time, between messages. A callback that returns an
awaitable (an ``async def``) is started as its own task so a slow one cannot hold up the others.
Periodic timers re-arm from their planned deadline, not from when they ran, so they do not
drift; ticks missed while the process was busy are skipped rather than run in a burst.
"""

from __future__ import annotations

import heapq
import inspect
import logging
import math
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any, Final

import trio

from . import timer_task

log: Final = logging.getLogger("ksr.timers")


# the grid of coarse timers (TimerService.once): 1/16 s, Kamailio's timer tick
COARSE_HZ: Final = 16
# the least time between two deadlines of cancelled timers that move the timer task's sleep
# (TimerService._unarm)
UNARM_SPACING: Final = 0.25


class TimerHandle:
    """One timer, and its own heap entry (heap order: ``__lt__`` on (deadline, seq)). One
    object per timer: tm starts a dozen timers per call, and the garbage collector walks each
    of them for as long as it lives. Compiled, a comparison is a C call (heapq's)."""

    __slots__ = ("deadline", "seq", "callback", "args", "interval", "label", "service", "fifo")

    def __init__(
        self,
        deadline: float,
        seq: int,
        callback: Callable[..., object] | None,
        args: tuple[Any, ...],
        interval: float | None,
        label: str,
        service: TimerService | None,
    ) -> None:
        self.deadline = deadline
        self.seq = seq
        self.callback = callback  # None once cancelled or run (a one-shot)
        self.args = args
        self.interval = interval  # None: a one-shot
        self.label = label
        self.service = service  # set while the handle waits on the heap
        # the queue of timers of its delay it waits in (TimerService.start_queued), else None
        self.fifo: TimerFifo | None = None

    def __lt__(self, other: TimerHandle) -> bool:
        d, o = self.deadline, other.deadline
        return d < o or (d == o and self.seq < other.seq)

    @property
    def cancelled(self) -> bool:
        return self.callback is None

    @property
    def name(self) -> str:
        cb = self.callback
        return self.label or (_name(cb) if cb is not None else "cancelled")

    def cancel(self) -> None:
        """Stop the timer; a cancelled one-shot never runs, a periodic one never runs again."""
        if self.callback is None:
            return
        self.callback = None  # what it would have run (a transaction...) can be freed now
        self.args = ()
        service = self.service
        if service is not None:
            self.service = None
            service.cancelled(self)


class TimerFifo:
    """Timers of one delay, started one after the other: their deadlines come in the order
    they were started, so they wait in a list and only the first (``items[head]``) is on the
    heap. Starting one is an append, not a sift up the heap among the cold handles of every
    other timer (tm starts a handful per call with the same few delays: fr_timer,
    fr_inv_timer, wt_timer)."""

    __slots__ = ("items", "head")

    def __init__(self) -> None:
        self.items: list[TimerHandle] = []
        self.head = 0  # items before it have left the heap


class TimerService:
    """Timers on a heap of TimerHandles. A cancelled timer stays on the heap until its
    deadline, unless cancelled ones come to outnumber the live ones: then the heap is rebuilt
    without them (tm cancels nearly every timer it starts, and its transaction lifetime guard
    runs for minutes). Compiled: starting and cancelling a timer, a dozen each per call, are
    native calls from tm and dialog; the timer task itself is ksr/core/timer_task.py."""

    def __init__(self) -> None:
        self._heap: list[TimerHandle] = []
        self._seq = 0
        # While the timer task sleeps: its cancel scope and the deadline that scope has. A new
        # timer due earlier moves that deadline (trio's deadline heap, no wake-up of the task);
        # -inf while the task runs (it reads the heap before it sleeps again) or is not started
        self._sleep: Any = None  # a trio.CancelScope
        self._armed = -math.inf
        self._unarmed = -math.inf  # the deadline of the last timer _unarm took off the sleep
        self._nursery: Any = None  # the timer task's trio.Nursery
        self.cancelled_on_heap = (
            0  # cancelled handles still on the heap or queued (counted by them)
        )
        # queues of timers by delay (start_queued), on the 1/16 s grid and on whole seconds;
        # each has its first timer on the heap, and ``_queued`` timers wait behind those
        self._fifos: dict[float, TimerFifo] = {}
        self._lax_fifos: dict[float, TimerFifo] = {}
        self._queued = 0
        self.failures = 0  # callbacks that raised (logged, the service carries on)
        self.wakeups = 0  # times the timer task woke up (each is a pass of trio's scheduler)
        # the run's clock, read directly while the timer task runs: trio.current_time() goes
        # through two more calls, and a call asks for the time ~25 times
        self._clock: Callable[[], float] | None = None
        # When that clock is ``perf_counter()`` plus an offset (trio's own, the serving
        # clock): the offset, and the time read here (compiled: a C call, where the clock's
        # method is an interpreted frame, ~1.5k instructions per read)
        self._perf = False
        self._offset = 0.0
        # While a received message is handled (``hold``): 1, the clock not read yet; 2, read
        # once into ``_held_at``, the time every timer the message starts counts from
        self._held = 0
        self._held_at = 0.0

    def now(self) -> float:
        """trio's current time (the clock the deadlines are on); while a message is handled
        (``hold``), the time it was first asked for during that message."""
        held = self._held
        if held == 2:
            return self._held_at
        if self._perf:
            t = self._offset + perf_counter()
        else:
            clock = self._clock
            t = clock() if clock is not None else trio.current_time()
        if held == 1:
            self._held_at, self._held = t, 2
        return t

    def hold(self) -> bool:
        """One received message is handled now (synchronously, ``release`` when done): the
        clock is read once for all of it, not per timer started (a dozen per call, each a call
        into trio's interpreted clock). Its timers then count from when the message was first
        asked the time, a few hundred microseconds before each would have read it itself: far
        inside any SIP timer's precision (Kamailio counts from its 1/16 s tick). False when a
        hold is already on (a message handled within another's): that one releases it."""
        if self._held:
            return False
        self._held = 1
        return True

    def release(self) -> None:
        """The held message is done: the clock is read afresh again."""
        self._held = 0

    def __len__(self) -> int:
        n = sum(1 for h in self._heap if h.callback is not None)
        for fifos in (self._fifos, self._lax_fifos):
            for q in fifos.values():
                n += sum(1 for h in q.items[q.head + 1 :] if h.callback is not None)
        return n

    def next_deadline(self) -> float | None:
        """When the earliest timer (live or cancelled) is due, or None."""
        return self._heap[0].deadline if self._heap else None

    def _push(self, handle: TimerHandle) -> None:
        """``handle`` (its ``service`` set) onto the heap; the sleeping task woken earlier if
        it is due first."""
        self._maybe_compact()
        self._place(handle)

    def _maybe_compact(self) -> None:
        cancelled = self.cancelled_on_heap
        if cancelled > 1024 and cancelled * 2 > len(self._heap) + self._queued:
            self._compact()

    def _place(self, handle: TimerHandle) -> None:
        heap = self._heap
        heap.append(handle)
        sift_up(heap, len(heap) - 1)
        deadline = handle.deadline
        if deadline < self._armed:
            self._rearm(deadline)

    def cancelled(self, handle: TimerHandle) -> None:
        """``handle``, still on the heap or queued, was cancelled (``TimerHandle.cancel``)."""
        self.cancelled_on_heap += 1
        if handle.deadline == self._armed:  # the sleeping timer task waits for it
            self._unarm(handle)

    def _unarm(self, handle: TimerHandle) -> None:
        """``handle``, first on the heap and the sleeping timer task's deadline, was cancelled
        (tm's Timer A or E of a fresh request, stopped by the reply milliseconds later): the
        task sleeps toward the next live timer instead of waking for nothing. A wake-up is
        ~130k instructions, a move of the task's deadline (trio's setter) ~17k, and the next
        new earliest timer moves it back: at most once per UNARM_SPACING of deadlines, so a
        low rate (a wake-up per call) is spared and a high one (a wake-up for many calls)
        does not pay two moves per timer."""
        deadline = handle.deadline
        if deadline - self._unarmed < UNARM_SPACING:
            return
        heap = self._heap
        if not heap or heap[0] is not handle:
            return  # another timer due as early comes first: the wake-up is not for nothing
        self._unarmed = deadline
        self._drop_cancelled_heads()
        armed = self._heap[0].deadline if self._heap else math.inf
        self._armed = armed
        sleep = self._sleep
        if sleep is not None:
            sleep.deadline = armed

    def _rearm(self, deadline: float) -> None:
        """The sleeping timer task is to wake at ``deadline`` (earlier than now planned)."""
        self._armed = deadline
        sleep = self._sleep
        if sleep is not None:
            sleep.deadline = deadline

    def _compact(self) -> None:
        heap = [h for h in self._heap if h.callback is not None and h.fifo is None]
        queued = 0
        for fifos in (self._fifos, self._lax_fifos):
            for q in fifos.values():
                live = [h for h in q.items[q.head :] if h.callback is not None]
                q.items, q.head = live, 0
                if live:
                    heap.append(live[0])
                    queued += len(live) - 1
        heapq.heapify(heap)
        self._heap = heap
        self._queued = queued
        self.cancelled_on_heap = 0

    def _next_of(self, q: TimerFifo) -> None:
        """The first timer of ``q`` left the heap: the next live one takes its place (the
        cancelled ones before it are dropped without ever reaching the heap)."""
        items = q.items
        n = len(items)
        head = q.head + 1
        while head < n and items[head].callback is None:
            head += 1
            self.cancelled_on_heap -= 1
        if head >= n:
            self._queued -= n - q.head - 1
            items.clear()
            q.head = 0
            return
        self._queued -= head - q.head  # the cancelled ones, and the new first for the heap
        if head > 32 and head * 2 > n:
            del items[:head]
            head = 0
        q.head = head
        self._place(items[head])

    def once(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        name: str = "",
        coarse: bool = False,
    ) -> TimerHandle:
        """Run ``callback(*args)`` once, ``delay`` seconds from now (args rather than a
        closure: fewer objects per timer).

        ``coarse``: a delay of a second or more may run up to 1/16 s late: its deadline is
        rounded up to the 1/16 s grid, so such timers (a transaction's wait and give-up
        timers, a dialog's timeouts) fall due together and cost the timer task one wake-up
        per grid step however many calls started them; shorter delays stay exact. Timers due
        in the same step run in the order they were started."""
        return self.start(delay, coarse, callback, args, name)

    def start(
        self,
        delay: float,
        coarse: bool,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        name: str = "",
    ) -> TimerHandle:
        """``once`` with its arguments as they are kept (the arguments a tuple): for callers
        that start timers per message (tm, dialog)."""
        return self.start_from(self.now(), delay, coarse, callback, args, name)

    def start_from(
        self,
        now: float,
        delay: float,
        coarse: bool,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        name: str = "",
    ) -> TimerHandle:
        """``start`` with the current time (``now()``) read by the caller: one clock read for
        the timers one message starts together (a read is a call into trio's clock)."""
        deadline = now + (delay if delay > 0.0 else 0.0)
        if coarse and delay >= 1.0:
            deadline = math.ceil(deadline * COARSE_HZ) / COARSE_HZ
        self._seq += 1
        h = TimerHandle(deadline, self._seq, callback, args, None, name, self)
        self._push(h)
        return h

    def start_queued(
        self,
        now: float,
        delay: float,
        lax: bool,
        callback: Callable[..., object],
        args: tuple[Any, ...],
    ) -> TimerHandle:
        """``start_from`` for a coarse timer (``delay`` of a second or more) whose delay many
        timers share (tm's fr_timer, fr_inv_timer, wt_timer): it waits behind the earlier ones
        of the same delay (``TimerFifo``), not on the heap. It runs when it would have on the
        heap: the same deadline, the same order among timers due together.

        ``lax``: a timer that only lets go of memory (tm's wait timers): its deadline rounded
        up to a whole second, so it may run up to a second late and shares its wake-up of the
        timer task with the others (and with periodic timers ``aligned`` on whole seconds)."""
        if delay < 1.0:
            return self.start_from(now, delay, True, callback, args)
        self._maybe_compact()
        fifos = self._lax_fifos if lax else self._fifos
        q = fifos.get(delay)
        if q is None:
            if len(fifos) >= 16:  # many delays (t_set_fr...): the heap, as any other timer
                return self.start_from(now, delay, True, callback, args)
            q = fifos[delay] = TimerFifo()
        if lax:
            deadline = float(math.ceil(now + delay))
        else:
            deadline = math.ceil((now + delay) * COARSE_HZ) / COARSE_HZ
        items = q.items
        if items and items[len(items) - 1].deadline > deadline:
            # due before the last one queued (a clock that went back): the heap
            return self.start_from(now, delay, True, callback, args)
        self._seq += 1
        h = TimerHandle(deadline, self._seq, callback, args, None, "", self)
        h.fifo = q
        items.append(h)
        if len(items) - q.head == 1:
            self._place(h)  # the first of its queue: on the heap
        else:
            self._queued += 1
        return h

    def every(
        self,
        interval: float,
        callback: Callable[[], object],
        name: str = "",
        first: float | None = None,
        aligned: bool = False,
    ) -> TimerHandle:
        """Run ``callback`` every ``interval`` seconds; the first run after ``first`` seconds
        (default: one interval). ``aligned``: the first run rounded up to a whole second (with
        a whole interval, every run then falls on whole seconds, with the ``lax`` timers of
        ``start_queued``)."""
        if not interval > 0 or math.isinf(interval):
            raise ValueError("timer interval must be a positive number of seconds")
        deadline = self.now() + (interval if first is None else max(first, 0.0))
        if aligned:
            deadline = float(math.ceil(deadline))
        self._seq += 1
        h = TimerHandle(deadline, self._seq, callback, (), interval, name, self)
        self._push(h)
        return h

    def _drop_cancelled_heads(self) -> None:
        """Take cancelled timers off the top of the heap, so the timer task sleeps until the
        first live deadline: tm and dialog cancel most timers (Timer B, C, F, the dialog's
        early and no-ACK timeouts...) long before they are due, and each would otherwise
        wake the task once for nothing."""
        heap = self._heap
        while heap and heap[0].callback is None:
            h = heapq.heappop(heap)
            self.cancelled_on_heap -= 1
            if h.fifo is not None:
                self._next_of(h.fifo)
                heap = self._heap

    def run_due(self, now: float) -> None:
        """Run every callback whose deadline has come, in deadline order (FIFO on ties)."""
        heap = self._heap
        while heap and heap[0].deadline <= now:
            h = heapq.heappop(heap)
            q = h.fifo
            if q is not None:  # its queue's next one takes its place on the heap
                h.fifo = None
                self._next_of(q)
            cb = h.callback
            if cb is None:
                self.cancelled_on_heap -= 1
                heap = self._heap
                continue
            h.service = None  # off the heap while it runs
            interval = h.interval
            if interval is None:  # a one-shot is done: a later cancel() is a no-op
                args = h.args
                h.callback, h.args = None, ()
                self._call(h, cb, args)
            else:
                self._call(h, cb, ())
                if h.callback is not None:  # not cancelled by its own run
                    nxt = h.deadline + interval
                    if nxt <= now:  # overran: skip the missed ticks, stay on the same grid
                        nxt += math.ceil((now - nxt) / interval + 1e-9) * interval
                        if nxt <= now:
                            nxt += interval
                    self._seq += 1
                    h.deadline, h.seq, h.service = nxt, self._seq, self
                    self._push(h)
            heap = self._heap  # a callback may have compacted it

    def tick(self, now: float) -> float:
        """One wake-up of the timer task: run what is due; when to wake next (inf: nothing
        waits)."""
        self.wakeups += 1
        self.run_due(now)
        self._drop_cancelled_heads()
        return self._heap[0].deadline if self._heap else math.inf

    def _call(self, h: TimerHandle, cb: Callable[..., object], args: tuple[Any, ...]) -> None:
        try:
            result: Any = cb(*args)
        except Exception:
            self.failures += 1
            log.exception("timer %s failed", h.label or _name(cb))
            return
        if inspect.isawaitable(result):
            if self._nursery is None:
                _close(result)
                log.error(
                    "timer %s returned an awaitable but the timer task is not running",
                    h.label or _name(cb),
                )
                return
            self._nursery.start_soon(timer_task.await_result, self, h.label or _name(cb), result)

    # -- what the timer task (ksr/core/timer_task.py) tells the service -------------------
    def attach(self, nursery: Any, clock: Callable[[], float]) -> None:
        """The task runs: awaitables of callbacks go to ``nursery``, time is read from
        ``clock``."""
        self._nursery, self._clock = nursery, clock
        offset = _perf_offset(getattr(clock, "__self__", None))
        self._perf = offset is not None
        self._offset = offset if offset is not None else 0.0

    def detach(self) -> None:
        """The task ended."""
        self._nursery, self._clock = None, None
        self._perf, self._offset = False, 0.0

    def sleeping(self, scope: Any, armed: float) -> None:
        """The task sleeps in ``scope`` (a trio.CancelScope) until ``armed``; None and -inf:
        it is awake (it reads the heap before it sleeps again)."""
        self._sleep, self._armed = scope, armed

    def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> Coroutine[Any, Any, None]:
        """The timer task (``nursery.start(timers.run)``)."""
        return timer_task.run(self, task_status)


def sift_up(heap: list[TimerHandle], pos: int) -> None:
    """heapq.heappush's sift after the append (the same heap as heapq's: heappop takes from
    it), comparing (deadline, seq) here: compiled, a comparison through heapq is a call of
    TimerHandle.__lt__ by its Python slot."""
    item = heap[pos]
    d, s = item.deadline, item.seq
    while pos > 0:
        ppos = (pos - 1) >> 1
        parent = heap[ppos]
        pd = parent.deadline
        if d < pd or (d == pd and s < parent.seq):
            heap[pos] = parent
            pos = ppos
        else:
            break
    heap[pos] = item


def _perf_offset(clock: Any) -> float | None:
    """The offset of a clock that reads ``perf_counter()`` plus an offset: trio's system
    clock (``offset``) or the serving clock (ksr/core/idle_wait.py, ``_offset``); None for any
    other (a test's MockClock...)."""
    if clock is None:
        return None
    name = type(clock).__module__ + "." + type(clock).__qualname__
    if name == "trio._core._run.SystemClock":
        offset = getattr(clock, "offset", None)
    elif name == "ksr.core.idle_wait.IdleWaitClock":
        offset = getattr(clock, "_offset", None)
    else:
        return None
    return float(offset) if isinstance(offset, float) else None


def _name(cb: Callable[..., object]) -> str:
    return getattr(cb, "__qualname__", None) or repr(cb)


def _close(aw: Any) -> None:
    close = getattr(aw, "close", None)
    if close is not None:
        close()
