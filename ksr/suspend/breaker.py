"""A circuit breaker (sans-IO: the caller passes the time).

Closed: calls go through. After ``failures`` consecutive failures of the *backend* (cannot
connect, connection lost, no answer in time) it opens: calls are refused at once for
``cooldown`` seconds. Then one call is let through as a probe; its success closes the breaker,
its failure opens it for another ``cooldown``. Errors that prove the backend answered (a bad
query, a constraint) count as successes.
"""

from __future__ import annotations


class Breaker:
    def __init__(self, failures: int = 3, cooldown: float = 2.0) -> None:
        self.threshold = max(1, failures)
        self.cooldown = cooldown
        self.fails = 0
        self.open_until = 0.0  # 0 = closed
        self.probing = False

    @property
    def is_open(self) -> bool:
        return self.open_until != 0.0

    def allow(self, now: float) -> bool:
        """May a call go to the backend now?"""
        if self.open_until == 0.0:
            return True
        if now < self.open_until or self.probing:
            return False
        self.probing = True  # half-open: this call is the probe
        return True

    def retry_in(self, now: float) -> float:
        """Seconds until the next probe (0 when closed)."""
        return max(0.0, self.open_until - now) if self.open_until else 0.0

    def success(self) -> bool:
        """Record a success; True if this closed an open breaker."""
        was_open = self.open_until != 0.0
        self.fails = 0
        self.open_until = 0.0
        self.probing = False
        return was_open

    def failure(self, now: float) -> bool:
        """Record a backend failure; True if this opened the breaker (it was closed)."""
        was_open = self.open_until != 0.0
        self.fails += 1
        self.probing = False
        if was_open or self.fails >= self.threshold:
            self.open_until = now + self.cooldown
            return not was_open
        return False
