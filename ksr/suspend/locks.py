"""Per-key mutual exclusion for routes that may suspend (one REGISTER per AOR at a time).

A route that finds the key taken waits (suspends) until the holder hands it over; code that
cannot suspend goes on without the lock, as before routes could wait at all. Handing over in
arrival order keeps two refreshes of one binding in the order they arrived.
"""

from __future__ import annotations

import trio

from .greenlets import can_suspend, wait


class KeyedLock:
    def __init__(self) -> None:
        self._busy: dict[str, list[trio.Event]] = {}

    def __len__(self) -> int:
        return len(self._busy)

    def acquire(self, key: str) -> bool:
        """Take ``key``; False when it could not be taken (busy and this code cannot
        suspend): then do not release it."""
        waiters = self._busy.get(key)
        if waiters is None:
            self._busy[key] = []
            return True
        if not can_suspend():
            return False
        ev = trio.Event()
        waiters.append(ev)
        try:
            wait(ev.wait)
        except BaseException:
            if ev.is_set():  # handed over just as the wait was interrupted: pass it on
                self.release(key)
            else:
                waiters.remove(ev)
            raise
        return True  # the releaser handed the key to this waiter

    def release(self, key: str) -> None:
        waiters = self._busy.get(key)
        if waiters is None:
            return
        if waiters:
            waiters.pop(0).set()
        else:
            del self._busy[key]
