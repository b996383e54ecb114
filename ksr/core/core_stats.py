"""Kamailio's core statistics: received requests by method, replies by class and method, what
the pipeline forwarded, dropped and failed, and memory gauges. Counting a message is two dict
lookups and two increments."""

from __future__ import annotations

import os
import resource
from typing import TYPE_CHECKING

from .stats import ONE, Counter, Stats

if TYPE_CHECKING:
    from ksr.sip.message import Request, Response

# core:rcv_requests_<method> (Kamailio's list); other methods count as core:unsupported_methods
REQUEST_METHODS = (
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
)
# core:rcv_replies_<class>xx_<suffix> for replies to these methods
REPLY_METHODS = {
    "BYE": "bye",
    "CANCEL": "cancel",
    "INVITE": "invite",
    "MESSAGE": "message",
    "PRACK": "prack",
    "REFER": "refer",
    "REGISTER": "reg",
    "UPDATE": "update",
}
REPLY_CODES = (401, 404, 407, 480, 486)  # codes with a counter of their own


class CoreStats:
    __slots__ = (
        "rcv_requests",
        "rcv_replies",
        "unsupported",
        "by_method",
        "by_class",
        "by_class_method",
        "by_code",
        "r18x",
        "shed_requests",
        "fwd_requests",
        "fwd_replies",
        "drop_requests",
        "drop_replies",
        "err_requests",
        "err_replies",
        "bad_msg_hdr",
        "script_runs",
        "script_errors",
        "suspended_retransmissions",
        "sl_replies",
    )

    def __init__(self, stats: Stats) -> None:
        c = stats.counter
        self.shed_requests = c(
            "core",
            "shed_requests",
            doc="new INVITEs answered 503 while the receive queue was too old",
        )
        self.rcv_requests = c("core", "rcv_requests", doc="SIP requests received")
        self.rcv_replies = c("core", "rcv_replies", doc="SIP replies received")
        self.unsupported = c(
            "core", "unsupported_methods", doc="requests received with a method not counted apart"
        )
        self.by_method: dict[str, Counter] = {
            m: c("core", f"rcv_requests_{m.lower()}", doc=f"{m} requests received")
            for m in REQUEST_METHODS
        }
        self.by_class: list[Counter] = [
            c("core", f"rcv_replies_{k}xx", doc=f"{k}xx replies received") for k in range(1, 7)
        ]
        self.by_class_method: dict[tuple[int, str], Counter] = {
            (k, m): c("core", f"rcv_replies_{k}xx_{s}", doc=f"{k}xx replies to {m} received")
            for k in range(1, 7)
            for m, s in REPLY_METHODS.items()
        }
        self.by_code: dict[int, Counter] = {
            code: c("core", f"rcv_replies_{code}", doc=f"{code} replies received")
            for code in REPLY_CODES
        }
        self.r18x = c("core", "rcv_replies_18x", doc="180-189 replies received")
        _memory_gauges(stats)
        self.fwd_requests = c("core", "fwd_requests", doc="requests forwarded statelessly")
        self.fwd_replies = c("core", "fwd_replies", doc="replies forwarded statelessly")
        self.drop_requests = c("core", "drop_requests", doc="requests dropped")
        self.drop_replies = c(
            "core",
            "drop_replies",
            doc="replies dropped (not for this server, or dropped by the reply route)",
        )
        self.err_requests = c(
            "core", "err_requests", doc="requests answered 500 because the script failed"
        )
        self.err_replies = c("core", "err_replies", doc="replies with an unreadable Via")
        self.bad_msg_hdr = c("core", "bad_msg_hdr", doc="messages that could not be parsed")
        self.script_runs = c(
            "core", "script_runs", doc="runs of routes and event callbacks of the script"
        )
        self.script_errors = c(
            "core", "script_errors", doc="route runs that failed (script error, runaway loop)"
        )
        self.suspended_retransmissions = c(
            "core",
            "suspended_retransmissions",
            doc="retransmissions absorbed while the first copy's route waited on I/O",
        )
        self.sl_replies = c("sl", "sent_replies", doc="replies sent statelessly")

    def on_request(self, req: Request) -> None:
        self.rcv_requests.value += 1
        counter = self.by_method.get(req.method)
        if counter is None:
            self.unsupported.value += 1
        else:
            counter.value += 1

    def on_reply(self, rpl: Response) -> None:
        self.rcv_replies.value += 1
        code = rpl.status
        k = code // 100
        if not 1 <= k <= 6:
            return
        self.by_class[k - 1].value += 1
        if 180 <= code < 190:
            self.r18x.value += 1
        elif code in self.by_code:
            self.by_code[code].value += 1
        try:
            method = rpl.cseq.method
        except Exception:  # a reply with a broken CSeq is still a received reply
            return
        counter = self.by_class_method.get((k, method))
        if counter is not None:
            counter.value += 1


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _meminfo(key: str) -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _memory_gauges(stats: Stats) -> None:
    """Kamailio's shmem:* names, read from this process: ksr has no shared memory pool, so
    used = resident set size, max_used = peak RSS, total/free = the machine's memory."""
    g = stats.gauge
    g("shmem", "used_size", _rss, "bytes of memory used (resident set of the ksr processes)")
    g("shmem", "real_used_size", _rss, "bytes of memory used (same as shmem:used_size)")
    g(
        "shmem",
        "max_used_size",
        lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "bytes of memory at the peak (sum of each process's peak)",
    )
    # the machine's figures: every worker reads the same, so they are not added up
    g("shmem", "total_size", lambda: _meminfo("MemTotal"), "bytes of memory of the machine", ONE)
    g(
        "shmem",
        "free_size",
        lambda: _meminfo("MemAvailable"),
        "bytes of memory available on the machine",
        ONE,
    )
    g("shmem", "fragments", lambda: 0, "memory fragments (always 0: no shared memory pool)", ONE)
