"""Failed authentications per source IP and per user: when to slow the answers, when to ban.

Sans-IO: the caller passes the time. Each key ("ip:192.0.2.7", "user:alice@example.com") keeps
the times of its failures inside the window. After ``slow_after`` failures the answers to that
key are delayed; after ``ban_after`` the key is banned for ``ban_time`` seconds (its checks fail
without looking at the password). Memory is bounded: the least recently failing keys go first.
With worker processes the book is a shared table: ``fail`` runs in every worker.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from ksr.core.replication import replicated


@dataclass(frozen=True, slots=True)
class Verdict:
    failures: int  # the highest failure count of the keys in the window
    delay: float  # seconds to hold the answer back (0: answer now)
    banned: tuple[str, ...]  # keys banned by this failure (newly)


class FailureBook:
    def __init__(
        self,
        window: float,
        slow_after: int,
        delay: float,
        ban_after: int,
        ban_time: float,
        max_keys: int = 100_000,
    ) -> None:
        self.window = window
        self.slow_after = slow_after
        self.delay = delay
        self.ban_after = ban_after
        self.ban_time = ban_time
        self.max_keys = max_keys
        self.times: OrderedDict[str, deque[float]] = OrderedDict()
        self.bans: dict[str, float] = {}  # key -> end of the ban
        self.seen: OrderedDict[str, float] = OrderedDict()  # credential fingerprints

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self.times.get(key)
        if q is None:
            q = self.times[key] = deque()
            if len(self.times) > self.max_keys:
                self.times.popitem(last=False)
        else:
            self.times.move_to_end(key)
        while q and now - q[0] >= self.window:
            q.popleft()
        return q

    def banned_until(self, key: str, now: float) -> float | None:
        end = self.bans.get(key)
        if end is None:
            return None
        if end <= now:
            del self.bans[key]
            return None
        return end

    def repeated(self, fingerprint: str, now: float) -> bool:
        """True when these very credentials failed already inside the window (a
        retransmission of the same request must not count twice)."""
        t = self.seen.get(fingerprint)
        self.seen[fingerprint] = now
        self.seen.move_to_end(fingerprint)
        if len(self.seen) > self.max_keys:
            self.seen.popitem(last=False)
        return t is not None and now - t < self.window

    @replicated
    def fail(self, keys: list[str], now: float) -> Verdict:
        """Record one failure for each key."""
        worst = 0
        banned: list[str] = []
        for key in keys:
            q = self._recent(key, now)
            q.append(now)
            n = len(q)
            worst = max(worst, n)
            if self.ban_after and n >= self.ban_after and self.banned_until(key, now) is None:
                self.bans[key] = now + self.ban_time
                q.clear()  # after the ban the key starts afresh
                banned.append(key)
        slow = bool(self.slow_after) and worst > self.slow_after
        return Verdict(worst, self.delay if slow else 0.0, tuple(banned))

    def slowed(self, keys: list[str], now: float) -> float:
        """The delay of an answer (a fresh challenge, say) to keys with failures on record."""
        n = max((self.failures(k, now) for k in keys), default=0)
        return self.delay if self.slow_after and n >= self.slow_after else 0.0

    def failures(self, key: str, now: float) -> int:
        q = self.times.get(key)
        if not q:
            return 0
        return sum(1 for t in q if now - t < self.window)

    # -- shared across worker processes (ksr/core/replication.py) ----------------------------
    def replica_snapshot(self) -> Any:
        return {"times": {k: list(q) for k, q in self.times.items()}, "bans": dict(self.bans)}

    def replica_restore(self, state: Any) -> None:
        self.times = OrderedDict((k, deque(v)) for k, v in state["times"].items())
        self.bans = dict(state["bans"])
