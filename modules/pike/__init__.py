"""pike: flood detection per source IP (KSR.pike, pike.top RPC).

Each source IP has a request counter per sampling unit (``sampling_time_unit`` seconds, shifted
by a server timer). An IP is flooding when the current unit holds more than
``reqs_density_per_unit`` requests. A flooding IP stays blocked
until it has been quiet (no checked request) for ``remove_latency`` seconds; then it is
forgotten. With worker processes every worker counts every request (a shared table, see
docs/workers.md): worker 0 shifts the units for all.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass

import trio

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.replication import replicated
from ksr.core.rpc import RpcError, rpc
from ksr.kemi.registry import kemi

log = logging.getLogger("ksr.pike")

OK, BLOCKED, NEW_BLOCKED = 1, -1, -2
# Kamailio's log levels (L_ALERT -3 .. L_DBG 3) to Python's
_LEVELS = {
    -3: logging.CRITICAL,
    -2: logging.CRITICAL,
    -1: logging.ERROR,
    0: logging.WARNING,
    1: logging.INFO,
    2: logging.INFO,
    3: logging.DEBUG,
}


class PikeParams(ModParams):
    sampling_time_unit: int = 2
    reqs_density_per_unit: int = 30
    remove_latency: int = 120
    pike_log_level: int = 0


@dataclass(slots=True)
class Source:
    prev: int = 0
    curr: int = 0
    last_hit: float = 0.0
    blocked: bool = False


def _clock() -> float:
    try:
        return trio.current_time()
    except RuntimeError:
        return time.monotonic()


def _normalize(ip: str) -> str | None:
    try:
        return str(ipaddress.ip_address(ip.strip().strip("[]")))
    except ValueError:
        return None


class Pike(Module):
    name = "pike"
    Params = PikeParams

    def init(self) -> None:
        self.sources: dict[str, Source] = {}
        self.level = _LEVELS.get(self.params.pike_log_level, logging.WARNING)
        self.c_blocked = self.server.stats.counter(
            "pike", "blocked_ips", doc="source addresses found flooding"
        )
        self.share("pike", self)

    async def start(self, nursery: trio.Nursery) -> None:
        self.server.timers.every(max(1, self.params.sampling_time_unit), self.tick)

    def tick(self) -> None:
        """End of a sampling unit (in worker 0 for all worker processes)."""
        if self.server.shared.leader:
            self.server.shared.sync()  # count what other workers saw in this unit
            for ip in self.shift():
                log.log(self.level, "pike: %s is no longer blocked", ip)

    @replicated
    def shift(self) -> list[str]:
        """Shift the counters, forget sources quiet for remove_latency; the blocked ones
        forgotten are returned."""
        now = _clock()
        latency = self.params.remove_latency
        gone = [ip for ip, s in self.sources.items() if now - s.last_hit >= latency]
        unblocked = [ip for ip in gone if self.sources.pop(ip).blocked]
        for s in self.sources.values():
            s.prev, s.curr = s.curr, 0
        return unblocked

    @replicated
    def hit(self, key: str) -> None:
        """One request from ``key`` (counted here, or in another worker process)."""
        s = self.sources.get(key)
        if s is None:
            s = self.sources[key] = Source()
        s.curr += 1
        s.last_hit = _clock()
        if s.curr > self.params.reqs_density_per_unit:
            s.blocked = True

    def replica_snapshot(self) -> list[tuple[str, int, int, float, bool]]:
        now = _clock()
        return [(ip, s.prev, s.curr, now - s.last_hit, s.blocked) for ip, s in self.sources.items()]

    def replica_restore(self, state: list[tuple[str, int, int, float, bool]]) -> None:
        now = _clock()
        self.sources = {ip: Source(p, c, now - age, b) for ip, p, c, age, b in state}

    def check(self, ip: str) -> int:
        """Count one request from ``ip``: 1 ok, -1 already blocked, -2 blocked by this one."""
        key = _normalize(ip)
        if key is None:
            log.error("pike: invalid IP address %r", ip)
            return OK  # Kamailio: an internal error lets the request through
        s = self.sources.get(key)
        was_blocked = s is not None and s.blocked
        self.hit(key)
        if was_blocked:
            return BLOCKED
        if self.sources[key].blocked:
            self.c_blocked.inc()
            log.log(self.level, "pike: %s detected as flooding (blocked)", key)
            return NEW_BLOCKED
        return OK

    @kemi()
    def pike_check_req(self, ctx: MsgContext) -> int:
        """Count the request from its source IP: 1 ok, -1 source previously detected as
        flooding, -2 newly detected as flooding (by this request)."""
        return self.check(ctx.src_ip)

    @kemi()
    def pike_check_ip(self, ctx: MsgContext, ip: str) -> int:
        """pike_check_ip(ip): like pike_check_req for the given IP address."""
        return self.check(ip)

    @rpc("pike.top")
    def rpc_top(self, mode: str = "HOT") -> list[dict[str, object]]:
        """pike.top [ALL|HOT|WARM]: tracked IPs (default HOT: blocked ones; WARM: not blocked;
        ALL: both) with their hits in the previous and current unit and seconds to expiry."""
        mode = str(mode).upper()
        if mode not in ("ALL", "HOT", "WARM"):
            raise RpcError(500, "Invalid filter: expected ALL, HOT or WARM")
        now = _clock()
        out: list[dict[str, object]] = []
        for ip, s in sorted(self.sources.items(), key=lambda kv: -kv[1].curr - kv[1].prev):
            if (mode == "HOT" and not s.blocked) or (mode == "WARM" and s.blocked):
                continue
            out.append(
                {
                    "ip_addr": ip,
                    "leaf_hits_prev": s.prev,
                    "leaf_hits_curr": s.curr,
                    "expires": max(0, round(s.last_hit + self.params.remove_latency - now)),
                    "status": "HOT" if s.blocked else "WARM",
                }
            )
        return out


MODULE = Pike
