"""trio's clock for serving: its sleep also reads ksr's UDP sockets.

When every task waits, trio asks its clock how long to sleep (``deadline_to_sleep_time``) and
then waits in epoll. A datagram that arrives wakes the UDP task: a pass of trio's run loop,
the task's coroutine frames resumed and the socket re-armed, ~50k instructions of interpreted
Python for each datagram that arrives alone (``python -m bench.wakeup_cost``), where a
blocking read costs ~10k. At a low or moderate rate every datagram arrives alone.

This clock does the waiting itself, in an epoll of its own that holds the UDP sockets and
trio's own epoll, and reads a datagram right where it wakes, with no task step. It hands back
to trio as soon as trio has anything to do: one of trio's descriptors is ready, handling a
datagram made a task runnable or moved a deadline, or the earliest deadline is due. The UDP
tasks still wait in trio as well, so datagrams are read when trio never sleeps (always busy)
just as before; both ways call the same reader.

``read_later_when_idle`` watches a descriptor read a moment *after* it becomes readable (the
replication connections between worker processes, ksr/core/replica_link.py: an idle worker
applies its siblings' writes 0.1 s after the first, all at once): the clock takes it out of
its epoll when it fires and calls its reader when that moment comes, again without a task
step (a task that woke, slept and read cost ~125k instructions per wake-up).

It needs two of trio's inner parts, the runner and its epoll (Linux); where they are missing
the clock is an ordinary one (``active`` False). ``core.idle_wait = false`` turns it off.
"""

from __future__ import annotations

import logging
import random
import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any

import trio

from .idle_loop import IdleReaders

log = logging.getLogger("ksr.idle_wait")


def _trio_runner() -> Any:
    """trio's running Runner (an inner part: None when this trio has none by that name)."""
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT

        return GLOBAL_RUN_CONTEXT.runner
    except (ImportError, AttributeError):
        return None


class IdleWaitClock(trio.abc.Clock):
    """trio's system clock (``perf_counter`` plus an offset), whose sleep serves the
    descriptors given to ``watch`` (the waiting itself: idle_loop.py, compiled)."""

    def __init__(self) -> None:
        # an offset as trio's own clock has, so nothing takes the clock for wall time
        self._offset = random.uniform(10000.0, 200000.0)
        self._idle: IdleReaders | None = None
        self._found = True  # trio's inner parts: False once looked for and missing

    @property
    def active(self) -> bool:
        """Whether a descriptor is read while trio sleeps."""
        return self._idle is not None and self._idle.watching()

    @property
    def wakeups(self) -> int:
        """Wake-ups served while trio slept, without a task step (a statistic)."""
        return 0 if self._idle is None else self._idle.wakeups

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self._offset + perf_counter()

    def watch(self, fd: int, read: Callable[[], None]) -> None:
        """Call ``read`` (which must not block) when ``fd`` is readable while trio sleeps."""
        if self._ready():
            assert self._idle is not None
            self._idle.watch(fd, read)

    def watch_later(self, fd: int, read: Callable[[], bool], delay: float) -> None:
        """Call ``read`` ``delay`` seconds after ``fd`` became readable while trio sleeps
        (IdleReaders.watch_later)."""
        if self._ready():
            assert self._idle is not None
            self._idle.watch_later(fd, read, delay)

    def _ready(self) -> bool:
        if self._idle is None and self._found:
            runner = _trio_runner()
            trio_epoll = getattr(getattr(runner, "io_manager", None), "_epoll", None)
            if not isinstance(trio_epoll, select.epoll) or not hasattr(runner, "runq"):
                log.debug("trio's epoll not found: datagrams wake their tasks")
                self._found = False
                return False
            self._idle = IdleReaders(runner, trio_epoll.fileno(), self._offset)
        return self._idle is not None

    def unwatch(self, fd: int) -> None:
        if self._idle is not None:
            self._idle.unwatch(fd)

    def deadline_to_sleep_time(self, deadline: float) -> float:
        timeout = deadline - (self._offset + perf_counter())
        idle = self._idle
        if timeout <= 0 or idle is None or not idle.watching():
            return timeout
        return idle.sleep(deadline, timeout)


def make_clock(enabled: bool) -> trio.abc.Clock | None:
    """The clock ``trio.run`` gets for serving (None: trio's own)."""
    return IdleWaitClock() if enabled else None


@contextmanager
def read_when_idle(fd: int, read: Callable[[], None]) -> Iterator[bool]:
    """While the block runs, the serving clock (when it is an IdleWaitClock) calls ``read``
    when ``fd`` is readable as trio sleeps. Yields whether it does."""
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, IdleWaitClock):
        yield False
        return
    clock.watch(fd, read)
    try:
        yield clock.active
    finally:
        clock.unwatch(fd)


@contextmanager
def read_later_when_idle(fd: int, read: Callable[[], bool], delay: float) -> Iterator[bool]:
    """While the block runs, the serving clock (when it is an IdleWaitClock) calls ``read``
    ``delay`` seconds after ``fd`` became readable as trio sleeps, until ``read`` returns
    False. Yields whether it does (else the caller waits for ``fd`` itself)."""
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, IdleWaitClock):
        yield False
        return
    clock.watch_later(fd, read, delay)
    try:
        yield clock.active
    finally:
        clock.unwatch(fd)
