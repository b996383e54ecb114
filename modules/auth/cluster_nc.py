"""Nonce-count replay protection shared by the nodes of a cluster, on Redis (docs/cluster.md).

Each accepted (nonce, nc) is an atomic check-and-set in one Lua script: the highest
nonce-count seen for the nonce is kept under ``<prefix>ksr:cluster:nc:<nonce>`` until the nonce
expires, and a count not above it is refused, whichever node saw the earlier one. In a route
that may suspend (docs/suspend.md: auth_check, www_authenticate...) the route waits for Redis
suspended while the worker goes on; elsewhere the call blocks for the round trip. Either way
at most ``TIMEOUT``; when Redis does not answer the node's own book decides (logged, counted).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from ksr.suspend import can_suspend, wait

from .nonces import NonceState

log = logging.getLogger("ksr.auth")

TIMEOUT = 0.25  # seconds a check may wait for Redis before the node's own book decides
RETRY_AFTER = 1.0  # seconds Redis is left alone after a failure (the local book decides)

# KEYS: the nonce's key. ARGV: nonce-count (-1: no qop, the nonce is good once), seconds to keep.
_CHECK_AND_SET = """
local last = redis.call('GET', KEYS[1])
local nc = tonumber(ARGV[1])
if last and (nc < 0 or tonumber(last) >= nc) then return 0 end
if nc < 0 then nc = 0 end
redis.call('SET', KEYS[1], nc, 'EX', ARGV[2])
return 1
"""


class ClusterNonceCounts:
    def __init__(self, url: str, prefix: str, expire: int, stats: Any) -> None:
        from ksr.db.redis_connect import connect

        self.r = connect(url, timeout=TIMEOUT)
        self.prefix = prefix
        self.expire = expire
        self.script = self.r.register_script(_CHECK_AND_SET)
        self.down_until = 0.0
        self.c_fallback = stats.counter(
            "auth",
            "nc_cluster_fallbacks",
            doc="nonce-count checks decided by this node alone (cluster Redis not answering)",
        )

    def use(self, nonce: str, nc: int | None, created: float, now: float) -> NonceState | None:
        """OK or REUSED as the cluster has seen it; None when Redis did not answer."""
        if time.monotonic() < self.down_until:
            self.c_fallback.inc()
            return None
        keep = max(1, int(created + self.expire - now) + 5)  # a little past the nonce's expiry
        key, count = f"{self.prefix}ksr:cluster:nc:{nonce}", -1 if nc is None else nc

        def run() -> Any:
            return self.script(keys=[key], args=[count, keep])

        try:
            if can_suspend():
                ok = wait(lambda: trio.to_thread.run_sync(run, abandon_on_cancel=True))
            else:
                ok = run()
        except Exception as err:  # redis errors and socket errors alike: the node decides alone
            self.down_until = time.monotonic() + RETRY_AFTER
            self.c_fallback.inc()
            log.warning("auth: cluster nonce-count check failed, this node decides: %s", err)
            return None
        return NonceState.OK if ok else NonceState.REUSED
