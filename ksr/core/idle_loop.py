"""The waiting of the serving clock (idle_wait.py), compiled: it runs once per datagram that
arrives while trio sleeps."""

from __future__ import annotations

import logging
import select
from collections.abc import Callable
from time import perf_counter
from typing import Any

log = logging.getLogger("ksr.idle_wait")

# trio's own limit on one wait (a day); epoll takes no more either
_MAX_WAIT = 86400.0


class IdleReaders:
    """Descriptors read while trio sleeps, in an epoll of their own that also holds trio's."""

    def __init__(self, runner: Any, trio_fd: int, offset: float) -> None:
        self.runner = runner
        self.trio_fd = trio_fd
        self.offset = offset  # the clock's: deadlines are perf_counter() plus it
        self.epoll = select.epoll()
        self.epoll.register(trio_fd, select.EPOLLIN)
        self.readers: dict[int, Callable[[], None]] = {}
        self.wakeups = 0  # datagrams' wake-ups served here, without a task step
        # descriptors read a moment after they become readable (watch_later): out of the
        # epoll from then until ``due`` (perf_counter time; 0.0: none waits)
        self.later: dict[int, Callable[[], bool]] = {}
        self.parked: list[int] = []
        self.delay = 0.1
        self.due = 0.0

    def watch(self, fd: int, read: Callable[[], None]) -> None:
        self.epoll.register(fd, select.EPOLLIN)
        self.readers[fd] = read

    def watch_later(self, fd: int, read: Callable[[], bool], delay: float) -> None:
        """Call ``read`` ``delay`` seconds after ``fd`` became readable (one call for all that
        arrived meanwhile) while trio sleeps; ``read`` returns False when ``fd`` is done
        (closed): it is no longer watched."""
        self.epoll.register(fd, select.EPOLLIN)
        self.later[fd] = read
        self.delay = delay

    def watching(self) -> bool:
        return bool(self.readers) or bool(self.later)

    def unwatch(self, fd: int) -> None:
        if self.readers.pop(fd, None) is not None:
            self.epoll.unregister(fd)
        elif self.later.pop(fd, None) is not None:
            if fd in self.parked:
                self.parked.remove(fd)
            else:
                self.epoll.unregister(fd)

    def _read_parked(self) -> None:
        parked = self.parked
        self.parked = []
        self.due = 0.0
        for fd in parked:
            read = self.later.get(fd)
            if read is None:
                continue
            self.wakeups += 1
            try:
                keep = read()
            except Exception:
                log.exception("reading descriptor %d", fd)
                keep = True
            if keep:
                self.epoll.register(fd, select.EPOLLIN)
            else:
                del self.later[fd]

    def sleep(self, deadline: float, timeout: float) -> float:
        """Wait up to ``timeout`` (> 0) reading the watched descriptors; return what is left
        for trio's own wait (0.0: trio has something to do, or the deadline is due)."""
        runner = self.runner
        if runner.waiting_for_idle:  # wait_all_tasks_blocked: trio times that sleep itself
            return timeout
        epoll = self.epoll
        readers = self.readers
        later = self.later
        trio_fd = self.trio_fd
        wait = timeout
        if self.due > 0.0:  # descriptors to read before trio's deadline
            left = self.due - perf_counter()
            if left < wait:
                wait = left if left > 0.0 else 0.0
        again = False  # this poll is the look again, without waiting, after a read
        while True:
            events = epoll.poll(wait if wait < _MAX_WAIT else _MAX_WAIT)
            read_here = False
            trio_ready = False
            if not events and not again:
                now = perf_counter()
                if self.due > 0.0 and now >= self.due - 0.0005:
                    read_here = True  # the parked descriptors' moment came
                    self._read_parked()
                elif self.due == 0.0 or self.offset + now >= deadline - 0.0005:
                    return 0.0  # the deadline is due: trio expires it
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
                elif fd in later:
                    # read a moment later, with whatever follows: parked out of the epoll
                    epoll.unregister(fd)
                    self.parked.append(fd)
                    if self.due == 0.0:
                        self.due = perf_counter() + self.delay
            if events and self.due > 0.0 and perf_counter() >= self.due:
                read_here = True  # their moment came while others kept this loop busy
                self._read_parked()
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
                now = perf_counter()
                wait = deadline - (self.offset + now)
                if wait <= 0:
                    return 0.0
                if self.due > 0.0 and self.due - now < wait:
                    wait = self.due - now if self.due > now else 0.0
