"""Suspending synchronous code on greenlets, driven by trio tasks.

``RouteRunner.call(fn, ...)`` runs ``fn`` in a pooled ``Worker`` greenlet. Code inside it that
must wait calls ``wait(afn)``: the worker switches back to the caller with an ``Await``, the
runner starts a trio task that awaits ``afn()`` and switches the answer back in. ``fn``'s result
comes back either at once (``Finished``, the fast path: no task, two greenlet switches) or later
through the ``done`` callback.

A fresh greenlet costs ~9 µs to start (its first switch sets up a stack), a pooled one ~0.5 µs
per call (two switches), measured here: hence the pool. ``greenback`` was not used: it needs a
trio task per suspendable call (~10-20 µs), and most routes never wait.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import greenlet
import outcome
import trio

log = logging.getLogger("ksr.suspend")

_IDLE_MAX = 256  # pooled greenlets kept for reuse


class Interrupted(Exception):
    """Raised inside a suspended route whose wait was cancelled (the server is stopping)."""


class Await:
    """What a suspended worker asks its runner for: the result of ``afn()``."""

    __slots__ = ("afn", "interrupted")

    def __init__(
        self,
        afn: Callable[[], Awaitable[Any]],
        interrupted: Callable[[], BaseException] | None = None,
    ) -> None:
        self.afn = afn
        self.interrupted = interrupted


class Finished:
    """A worker's function returned (or raised): ``result`` is its outcome."""

    __slots__ = ("result",)

    def __init__(self, result: outcome.Outcome[Any]) -> None:
        self.result = result


class Worker(greenlet.greenlet):
    """A pooled greenlet running one function at a time. ``allow`` is true while the code in
    it may suspend; a nested synchronous run (an event route fired from inside a KSR call)
    clears it for its duration, so nothing below that run ever switches away."""

    def __init__(self) -> None:
        super().__init__(self._loop)
        self.allow = True

    def _loop(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        while True:
            self.allow = True
            try:
                res = Finished(outcome.Value(fn(*args)))
            except greenlet.GreenletExit:
                raise
            except BaseException as err:  # the runner hands it to whoever waits for fn
                res = Finished(outcome.Error(err))
            fn = args = None  # type: ignore[assignment]  # an idle worker keeps no message alive
            fn, args = self.parent.switch(res)


def can_suspend() -> bool:
    """True when the running code may call ``wait()`` (it runs in a worker, not below a nested
    synchronous run, not in a timer or reply handler)."""
    g = greenlet.getcurrent()
    return type(g) is Worker and g.allow


def wait(
    afn: Callable[[], Awaitable[Any]], interrupted: Callable[[], BaseException] | None = None
) -> Any:
    """Suspend the running worker until ``afn()`` completes; its value, or its exception
    raised here. ``interrupted()`` makes the exception raised when the wait is cancelled
    (default ``Interrupted``). Only valid when ``can_suspend()``."""
    g = greenlet.getcurrent()
    if type(g) is not Worker or not g.allow:
        raise RuntimeError("wait() called outside a suspendable route")
    res: outcome.Outcome[Any] = g.parent.switch(Await(afn, interrupted))
    return res.unwrap()


def no_suspend() -> Worker | None:
    """Forbid suspension for a nested synchronous section; give the result to
    ``restore_suspend`` afterwards."""
    g = greenlet.getcurrent()
    if type(g) is Worker and g.allow:
        g.allow = False
        return g
    return None


def restore_suspend(g: Worker | None) -> None:
    if g is not None:
        g.allow = True


class Suspension:
    """A worker that is waiting: resume it with ``RouteRunner.complete``."""

    __slots__ = ("worker", "waiting")

    def __init__(self, worker: Worker, waiting: Await) -> None:
        self.worker = worker
        self.waiting = waiting


class RouteRunner:
    """Runs functions in pooled workers and completes the suspended ones in trio tasks.
    Without a nursery (a server that is not serving: tests, tools) functions run as plain
    calls and never suspend."""

    def __init__(self) -> None:
        self.nursery: trio.Nursery | None = None
        self._idle: list[Worker] = []
        self.suspended = 0  # routes waiting now
        self.suspensions = 0  # waits so far (statistics)

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Finished | Suspension:
        """``fn(*args)`` in a worker: its Finished, or a Suspension when it waits (complete
        it in a task started with ``spawn``)."""
        if self.nursery is None or type(greenlet.getcurrent()) is Worker:
            return Finished(outcome.capture(fn, *args))
        g = self._idle.pop() if self._idle else Worker()
        r = g.switch(fn, args)
        if type(r) is Finished:
            if len(self._idle) < _IDLE_MAX:
                self._idle.append(g)
            return r
        self.suspensions += 1
        return Suspension(g, r)

    def run_detached(self, fn: Callable[[], Any], what: str) -> None:
        """Run ``fn()`` (timer work) so that its I/O waits instead of blocking the worker;
        nobody waits for its result (an exception is logged naming ``what``)."""
        r = self.call(fn, ())
        if type(r) is Finished:
            if isinstance(r.result, outcome.Error):
                log.error("%s failed: %r", what, r.result.error)
            return
        assert isinstance(r, Suspension)

        async def finish() -> None:
            fin = await self.complete(r)
            if isinstance(fin.result, outcome.Error):
                log.error("%s failed: %r", what, fin.result.error)

        self.spawn(finish)

    def spawn(self, afn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start the task that completes a suspended route."""
        assert self.nursery is not None
        self.suspended += 1
        self.nursery.start_soon(self._counted, afn, args)

    async def _counted(self, afn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await afn(*args)
        except Exception:
            log.exception("suspended route: continuation failed")
        finally:
            self.suspended -= 1

    async def complete(
        self,
        s: Suspension,
        enter: Callable[[], Any] | None = None,
        leave: Callable[[Any], None] | None = None,
    ) -> Finished:
        """Await what the worker waits for, resume it with the answer, until it finishes.
        ``enter()`` runs before each resume and ``leave(token)`` (with enter's value) after,
        so an engine can make the message current again (others ran meanwhile). If this task
        is cancelled, the worker is resumed with its wait's ``interrupted`` exception (it
        unwinds, never hangs) and the cancellation is re-raised once it finished."""
        g, aw = s.worker, s.waiting
        cancelled: BaseException | None = None
        while True:
            try:
                res: outcome.Outcome[Any] = outcome.Value(await aw.afn())
            except trio.Cancelled as err:
                cancelled = err
                exc = aw.interrupted() if aw.interrupted else Interrupted("cancelled")
                res = outcome.Error(exc)
            except BaseException as err:
                res = outcome.Error(err)
            token = enter() if enter is not None else None
            try:
                r = g.switch(res)
            finally:
                if leave is not None:
                    leave(token)
            if type(r) is Finished:
                break
            self.suspensions += 1
            aw = r
        if len(self._idle) < _IDLE_MAX:
            self._idle.append(g)
        if cancelled is not None:
            raise cancelled
        return r
