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

log = logging.getLogger("ksr.idle_wait")

# trio's own limit on one wait (a day); epoll takes no more either
_MAX_WAIT = 86400.0


def _trio_runner() -> Any:
    """trio's running Runner (an inner part: None when this trio has none by that name)."""
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT

        return GLOBAL_RUN_CONTEXT.runner
    except (ImportError, AttributeError):
        return None


class IdleWaitClock(trio.abc.Clock):
    """trio's system clock (``perf_counter`` plus an offset), whose sleep serves the
    descriptors given to ``watch``."""

    def __init__(self) -> None:
        # an offset as trio's own clock has, so nothing takes the clock for wall time
        self._offset = random.uniform(10000.0, 200000.0)
        self._readers: dict[int, Callable[[], None]] = {}
        self._epoll: select.epoll | None = None
        self._runner: Any = None
        self.active = False  # True once trio's inner parts were found and a reader watched
        self.wakeups = 0  # wake-ups served here, without a task step (a statistic)

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self._offset + perf_counter()

    def watch(self, fd: int, read: Callable[[], None]) -> None:
        """Call ``read`` (which must not block) when ``fd`` is readable while trio sleeps."""
        if self._epoll is None:
            runner = _trio_runner()
            trio_epoll = getattr(getattr(runner, "io_manager", None), "_epoll", None)
            if not isinstance(trio_epoll, select.epoll):
                log.debug("trio's epoll not found: datagrams wake their tasks")
                return
            self._runner = runner
            self._epoll = select.epoll()
            self._trio_fd = trio_epoll.fileno()
            self._epoll.register(self._trio_fd, select.EPOLLIN)
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = read
        self.active = True

    def unwatch(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None and self._epoll is not None:
            self._epoll.unregister(fd)
        self.active = bool(self._readers)

    def deadline_to_sleep_time(self, deadline: float) -> float:
        timeout = deadline - self.current_time()
        if timeout <= 0 or not self._readers:
            return timeout
        runner = self._runner
        if runner.waiting_for_idle:  # wait_all_tasks_blocked: trio times that sleep itself
            return timeout
        epoll = self._epoll
        assert epoll is not None
        readers = self._readers
        trio_fd = self._trio_fd
        wait = timeout
        again = False  # this poll is the look again, without waiting, after a read
        while True:
            events = epoll.poll(wait if wait < _MAX_WAIT else _MAX_WAIT)
            if not events and not again:
                return 0.0  # the deadline is due: trio expires it
            read_here = trio_ready = False
            for fd, _ in events:
                if fd == trio_fd:
                    trio_ready = True
                    continue
                read = readers.get(fd)
                if read is not None:
                    read_here = True
                    self.wakeups += 1
                    try:
                        read()
                    except Exception:  # the reader logs its datagrams' errors itself
                        log.exception("reading descriptor %d", fd)
            if trio_ready and (again or not read_here):
                return 0.0  # trio's own descriptors are ready
            if read_here and (runner.runq or runner.deadlines.next_deadline() != deadline):
                return 0.0  # a task to run, or a deadline that came or moved
            # trio's epoll holds the UDP sockets too (their tasks wait there), so it was ready
            # with the datagram just read: look again without waiting before sleeping on
            again = trio_ready
            if again:
                wait = 0.0
            else:
                wait = deadline - self.current_time()
                if wait <= 0:
                    return 0.0


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
