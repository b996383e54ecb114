"""Blocking client calls (psycopg, redis-py, sqlite3) that never stall the event loop.

A ``Backend`` owns a bounded pool of threads, each with its own connection (made in the thread,
on first use). ``run(job)`` runs ``job(slot)`` in one of them, where ``slot.conn`` is that
thread's connection (None until the job connects):

* in a suspendable route (``ksr.suspend.can_suspend()``) the route waits, the worker goes on;
* elsewhere (timers, reply processing, RPC) the caller blocks, at most ``timeout`` seconds.

Every call has the query timeout: when it passes, the connection is aborted (its socket shut
down, so the thread is freed) and the caller gets ``unavailable``. At most ``pool`` calls run
and ``queue`` more wait; beyond that a call fails at once. A circuit breaker (breaker.py) turns
a backend that is down into fast failures, probing it again after a cool-down; each change of
state is logged with the backend's name.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from .breaker import Breaker
from .greenlets import can_suspend, wait

log = logging.getLogger("ksr.db")
SWITCH_INTERVAL = float(os.environ.get("KSR_SWITCH_INTERVAL", "0.0005"))
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Limits:
    """Per backend; set with ``db_url`` options (docs/storage.md)."""

    pool: int = 32  # connections, i.e. calls running at once
    queue: int = 512  # calls waiting for a connection beyond those
    timeout: float = 2.0  # seconds one call may take (connecting included)
    breaker_failures: int = 3  # consecutive backend failures that open the circuit
    breaker_cooldown: float = 2.0  # seconds of fast failures before the next probe
    offload: bool = True  # False: run in the calling thread (a local SQLite file)
    # "thread": each call runs in a pool thread on its own connection; "loop": in the event
    # loop's thread, up to ``pool`` connections shared by the calls (ksr/db/pg_pipe.py)
    driver: str = "thread"


class Slot:
    """One connection: a pool thread's, or (driver "loop") one that ``users`` calls share."""

    __slots__ = ("conn", "users")

    def __init__(self) -> None:
        self.conn: Any = None
        self.users = 0


class _ThreadSlots(threading.local):
    slot: Slot | None = None


class _Running:
    """The slot a call runs on, so a timeout can abort its connection."""

    __slots__ = ("slot",)

    def __init__(self) -> None:
        self.slot: Slot | None = None


class Backend:
    def __init__(
        self,
        name: str,
        limits: Limits,
        unavailable: Callable[[str], Exception],
        is_unavailable: Callable[[BaseException], bool],
        abort: Callable[[Any], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.limits = limits
        self._unavailable = unavailable
        self._is_unavailable = is_unavailable
        self._abort = abort
        self._clock = clock
        self.breaker = Breaker(limits.breaker_failures, limits.breaker_cooldown)
        self._slot = Slot()  # the calling thread's, when offload is off
        self._slots = _ThreadSlots()
        self._all_slots: list[Slot] = [self._slot]
        self._lock = threading.Lock()  # inflight is changed from pool threads too
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._shared: list[Slot] = []  # driver "loop": the connections routes share
        self.inflight = 0  # calls submitted and not finished
        self.timeouts = 0
        self.refused = 0  # fast failures (circuit open, queue full)

    # -- the one entry point ------------------------------------------------------------------
    def run(self, job: Callable[[Slot], T]) -> T:
        now = self._clock()
        if not self.breaker.allow(now):
            self.refused += 1
            err = self._unavailable(
                f"{self.name}: unavailable, failing fast (next try in "
                f"{self.breaker.retry_in(now):.1f}s)"
            )
            if hasattr(err, "retry_after"):
                err.retry_after = self.retry_after
            raise err
        if not self.limits.offload:
            return self._record(job, self._slot)
        if self.limits.driver == "loop":
            return self._run_in_loop(job)
        if self.inflight >= self.limits.pool + self.limits.queue:
            self.refused += 1
            self.breaker.probing = False  # a refused probe must not block the next one
            raise self._unavailable(f"{self.name}: overloaded ({self.inflight} calls waiting)")
        if can_suspend():
            return wait(
                lambda: self._run_async(job),
                lambda: self._unavailable(f"{self.name}: call interrupted (stopping)"),
            )
        return self._run_blocking(job)

    @property
    def retry_after(self) -> int:
        """Seconds a client should wait before trying again (for Retry-After)."""
        return max(1, round(self.breaker.retry_in(self._clock()) or self.limits.breaker_cooldown))

    def slots(self) -> list[Slot]:
        """Every thread's connection slot (closing, tests)."""
        with self._lock:
            return list(self._all_slots)

    def close(self) -> None:
        ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)

    # -- driver "loop": connections shared by routes, waits in the event loop -------------------
    def _run_in_loop(self, job: Callable[[Slot], T]) -> T:
        """The job runs right here, on a connection it may share with other routes (its client
        keeps several statements in flight on one connection and suspends the route until its
        answer came, ksr/db/pg_pipe.py); where routes cannot wait, on the loop's own one."""
        if not can_suspend():
            return self._record(job, self._slot)  # timers, RPC, start-up: one call at a time
        if self.inflight >= self.limits.pool + self.limits.queue:
            self.refused += 1
            self.breaker.probing = False
            raise self._unavailable(f"{self.name}: overloaded ({self.inflight} calls waiting)")
        slot = self._least_used()
        slot.users += 1
        self.inflight += 1
        try:
            return self._record(job, slot)
        finally:
            slot.users -= 1
            self.inflight -= 1

    def _least_used(self) -> Slot:
        """The connection with the fewest calls on it; a new one while all are busy and there
        are fewer than ``pool``."""
        best: Slot | None = None
        for slot in self._shared:
            if best is None or slot.users < best.users:
                best = slot
                if not slot.users:
                    break
        if best is None or (best.users and len(self._shared) < self.limits.pool):
            best = Slot()
            self._shared.append(best)
            self._all_slots.append(best)
        return best

    # -- paths ----------------------------------------------------------------------------------
    def _submit(self, job: Callable[[Slot], T]) -> tuple[concurrent.futures.Future[T], _Running]:
        if self._executor is None:
            # the event loop shares the GIL with these threads: a short switch interval gives
            # it back sooner after each syscall (5 ms by default: latency for every message)
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.limits.pool, thread_name_prefix=f"ksr-db-{self.name}"
            )
        running = _Running()
        slots = self._slots

        def in_thread() -> T:
            slot = slots.slot
            if slot is None:
                slot = slots.slot = Slot()
                with self._lock:
                    self._all_slots.append(slot)
            running.slot = slot
            return job(slot)

        with self._lock:
            self.inflight += 1
        fut = self._executor.submit(in_thread)
        fut.add_done_callback(self._finished)
        return fut, running

    async def _run_async(self, job: Callable[[Slot], T]) -> T:
        fut, running = self._submit(job)
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        fut.add_done_callback(wake)
        with trio.move_on_after(self.limits.timeout):
            await done.wait()
        if not fut.done():
            self._timed_out(running)
        return self._outcome(fut)

    def _run_blocking(self, job: Callable[[Slot], T]) -> T:
        fut, running = self._submit(job)
        concurrent.futures.wait([fut], timeout=self.limits.timeout)
        if not fut.done():
            self._timed_out(running)
        return self._outcome(fut)

    def _finished(self, _: object) -> None:
        # runs when the call ends: at once if it has, else later in its thread (timed out)
        with self._lock:
            self.inflight -= 1

    def _timed_out(self, running: _Running) -> None:
        self.timeouts += 1
        slot = running.slot
        if slot is not None and slot.conn is not None:
            try:
                self._abort(slot.conn)  # frees the thread; the connection is remade next time
            except Exception:
                log.debug("%s: abort failed", self.name, exc_info=True)
        err = self._unavailable(f"{self.name}: no answer within {self.limits.timeout:g}s")
        self._failed(err)
        raise err

    def _outcome(self, fut: concurrent.futures.Future[T]) -> T:
        try:
            value = fut.result()
        except BaseException as err:
            if self._is_unavailable(err):
                self._failed(err)
            elif self.breaker.success():
                log.warning("%s: available again", self.name)
            raise
        if self.breaker.success():
            log.warning("%s: available again", self.name)
        return value

    def _record(self, job: Callable[[Slot], T], slot: Slot) -> T:
        """Run in the calling thread (offload off), recording the outcome for the breaker."""
        try:
            value = job(slot)
        except BaseException as err:
            if self._is_unavailable(err):
                self._failed(err)
            elif self.breaker.success():
                log.warning("%s: available again", self.name)
            raise
        if self.breaker.success():
            log.warning("%s: available again", self.name)
        return value

    def _failed(self, err: BaseException) -> None:
        opened = self.breaker.failure(self._clock())
        if hasattr(err, "retry_after"):
            err.retry_after = self.retry_after  # the client's Retry-After
        if opened:
            log.error(
                "%s: unavailable (%s); failing fast for %.1fs, then probing",
                self.name,
                err,
                self.limits.breaker_cooldown,
            )
