"""Nonces that expire and are never accepted twice with the same nonce-count."""

from __future__ import annotations

import os
from collections import OrderedDict
from enum import Enum

from ksr.core.replication import replicated
from ksr.sip.digest import NonceCodec


class NonceState(Enum):
    OK = 0
    STALE = 1  # expired, unknown to us, or forgotten: challenge again with stale=true
    REUSED = 2  # nonce-count not above the last one seen (a replay)


class NonceBook:
    """Issues nonces and remembers the last nonce-count used with each one until it expires.
    With worker processes every worker keeps the same record (a shared table): a nonce-count
    accepted by one is a replay for all."""

    def __init__(self, secret: bytes | None, expire: int, max_tracked: int = 200_000) -> None:
        self.codec = NonceCodec(secret or os.urandom(32))
        self.expire = expire
        self.max_tracked = max_tracked
        self.serial = int.from_bytes(os.urandom(3), "big")
        self.last_nc: OrderedDict[str, int] = (
            OrderedDict()
        )  # nonce -> last nc (0 = used without qop)
        self.forgotten_before = 0  # nonces created before this time may have been evicted

    def issue(self, now: float) -> str:
        self.serial = (self.serial + 1) & 0xFFFFFFFF
        return self.codec.make(int(now), self.serial)

    def check(self, nonce: str, now: float) -> NonceState:
        """Is ``nonce`` ours and still fresh? (the nonce-count is checked in ``use``)."""
        info = self.codec.parse_untrusted(nonce)
        if info is None:
            return NonceState.STALE
        if info.created + self.expire < now or info.created > now + 5:
            return NonceState.STALE
        if info.created <= self.forgotten_before and nonce not in self.last_nc:
            return NonceState.STALE
        return NonceState.OK

    def use(self, nonce: str, nc: int | None, now: float) -> NonceState:
        """Record a successful use; a replayed (or out of order) nonce-count is REUSED.
        Without qop there is no nonce-count: the nonce is then good for one request."""
        last = self.last_nc.get(nonce)
        if last is not None and (nc is None or nc <= last):
            return NonceState.REUSED
        self.record(nonce, nc if nc is not None else 0, now)
        return NonceState.OK

    @replicated
    def record(self, nonce: str, nc: int, now: float) -> None:
        """The nonce-count ``nc`` was accepted (here or, replicated, in another worker)."""
        last = self.last_nc.get(nonce)
        if last is None or nc > last:
            self.last_nc[nonce] = nc
            self.last_nc.move_to_end(nonce)
            self._evict(now)

    def replica_snapshot(self) -> tuple[list[tuple[str, int]], int]:
        return list(self.last_nc.items()), self.forgotten_before

    def replica_restore(self, state: tuple[list[tuple[str, int]], int]) -> None:
        pairs, forgotten = state
        self.last_nc = OrderedDict(pairs)
        self.forgotten_before = forgotten

    def _evict(self, now: float) -> None:
        while self.last_nc:
            oldest = next(iter(self.last_nc))
            info = self.codec.parse_untrusted(oldest)
            too_old = info is None or info.created + self.expire < now
            if not too_old and len(self.last_nc) <= self.max_tracked:
                break
            self.last_nc.popitem(last=False)
            if info is not None and not too_old:
                self.forgotten_before = max(self.forgotten_before, info.created)
