"""The timer task of ``TimerService`` (ksr/core/timers.py): kept out of the compiled module, as
trio runs it as a coroutine and a compiled one is not (timers.py's ``run`` returns this one)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from .timers import TimerService

log = logging.getLogger("ksr.timers")


async def run(svc: TimerService, task_status: Any) -> None:
    async with trio.open_nursery() as nursery:
        clock = trio.lowlevel.current_clock().current_time
        svc.attach(nursery, clock)
        task_status.started()
        try:
            while True:
                # sleep until the earliest live deadline; a timer started meanwhile that is
                # due earlier moves the scope's deadline (once/_push): no wake-up for it
                armed = svc.tick(clock())
                with trio.CancelScope(deadline=armed) as sleep:
                    svc.sleeping(sleep, armed)
                    try:
                        await trio.sleep_forever()
                    finally:
                        svc.sleeping(None, -math.inf)
        finally:
            svc.detach()


async def await_result(svc: TimerService, name: str, aw: Awaitable[object]) -> None:
    """A callback's awaitable, run as its own task."""
    try:
        await aw
    except Exception:
        svc.failures += 1
        log.exception("timer %s failed", name)
