"""Routes that wait without blocking the worker (docs/suspend.md).

A route runs as ordinary synchronous code. When a KSR call needs I/O (a database query, an
HTTP request), the code deep inside it calls ``wait(afn)``: the route is suspended (its
greenlet switches back to the event loop), ``afn()`` runs as a trio task, and the route is
resumed with the answer while other messages and timers go on. Outside a suspendable route
(timers, reply processing, nested event routes) ``can_suspend()`` is false and the caller
blocks instead, bounded by the backend's query timeout.
"""

from .greenlets import (
    Await,
    Finished,
    RouteRunner,
    Suspension,
    Worker,
    can_suspend,
    no_suspend,
    restore_suspend,
    wait,
)

__all__ = [
    "Await",
    "Finished",
    "RouteRunner",
    "Suspension",
    "Worker",
    "can_suspend",
    "no_suspend",
    "restore_suspend",
    "wait",
]
