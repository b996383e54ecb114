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

    def watch(self, fd: int, read: Callable[[], None]) -> None:
        self.epoll.register(fd, select.EPOLLIN)
        self.readers[fd] = read

    def unwatch(self, fd: int) -> None:
        if self.readers.pop(fd, None) is not None:
            self.epoll.unregister(fd)

    def sleep(self, deadline: float, timeout: float) -> float:
        """Wait up to ``timeout`` (> 0) reading the watched descriptors; return what is left
        for trio's own wait (0.0: trio has something to do, or the deadline is due)."""
        runner = self.runner
        if runner.waiting_for_idle:  # wait_all_tasks_blocked: trio times that sleep itself
            return timeout
        epoll = self.epoll
        readers = self.readers
        trio_fd = self.trio_fd
        wait = timeout
        again = False  # this poll is the look again, without waiting, after a read
        while True:
            events = epoll.poll(wait if wait < _MAX_WAIT else _MAX_WAIT)
            if not events and not again:
                return 0.0  # the deadline is due: trio expires it
            read_here = False
            trio_ready = False
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
                wait = deadline - (self.offset + perf_counter())
                if wait <= 0:
                    return 0.0
