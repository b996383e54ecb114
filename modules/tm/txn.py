"""A proxy transaction: the server side (caller) and its client branches (callees).

Each side wraps a sans-IO machine from ``ksr.sip.transaction``; the shell that feeds them
events and runs their actions is ``engine.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from zlib import crc32

from ksr.sip.builders import BRANCH_COOKIE
from ksr.sip.message import Header, Request, Response

from .api import CallbackList

if TYPE_CHECKING:
    from ksr.core.context import Destination, SocketInfo
    from ksr.core.timers import TimerHandle
    from ksr.sip.transaction import Machine

LOOP_HASH_LEN: Final = 8


class UacBranch:
    """One outgoing copy of the request (RFC 3261 §16.6) and its client transaction."""

    __slots__ = (
        "tx",
        "idx",
        "uri",
        "dst_uri",
        "dest",
        "sock",
        "bid",
        "method",
        "request",
        "data",
        "machine",
        "handles",
        "deferred",
        "deferred_at",
        "status",
        "reply",
        "timed_out",
        "replied",
        "cancel_pending",
        "cancel",
        "ack_data",
        "flags",
        "local",
        "reason",
        "alt",
    )

    def __init__(self, tx: Transaction, idx: int, uri: str, dst_uri: str | None) -> None:
        self.tx = tx
        self.idx = idx
        self.uri = uri  # R-URI of this branch
        self.dst_uri = dst_uri  # $du of this branch, if set
        self.dest: Destination | None = None
        self.sock: SocketInfo | None = None
        self.bid = ""  # our Via branch
        self.method = ""  # of what we sent
        # what we sent; let go once the transaction's final reply is out (the bytes are kept)
        self.request: Request | None = None
        self.data = b""  # its bytes (for retransmissions)
        self.machine: Machine | None = None
        self.handles: dict[str, TimerHandle] = {}
        # a timer the machine started that no TimerHandle holds yet (engine.uac_actions: Timer
        # B or F, started with A or E and made only if that one fires), and the time it
        # counts from
        self.deferred = ""
        self.deferred_at = 0.0
        self.status = 0  # last status received (or 408 on timeout)
        self.reply: Response | None = None  # the final reply of this branch
        self.timed_out = False
        self.replied = False  # some reply was received
        self.cancel_pending = False  # CANCEL it once a provisional arrives
        self.cancel: UacBranch | None = None  # the CANCEL's own client transaction
        self.ack_data = b""
        self.flags = 0  # branch flags
        self.local = False  # the final reply was made up by ksr (timeout)
        self.reason = ""  # the reason of a local final status other than a timeout (478)
        # the next hop's other destinations (RFC 3263 order), for DNS failover (use_dns_failover)
        self.alt: tuple[Destination, ...] = ()

    @property
    def pending(self) -> bool:
        return self.status < 200


class Transaction:
    """A stateful request: what arrived, what was replied, where it was forked."""

    __slots__ = (
        "id",
        "key",
        "method",
        "is_invite",
        "request",
        "ruri",
        "src_ip",
        "src_port",
        "proto",
        "socket",
        "conn_id",
        "reply_dest",
        "machine",
        "handles",
        "last_reply",
        "status",
        "reason",
        "to_tag",
        "branches",
        "on_failure",
        "on_reply",
        "on_branch",
        "on_branch_failure",
        "fr",
        "fr_inv",
        "flags",
        "canceled",
        "callbacks",
        "extra",
        "ended",
        "e2e_key",
        "lumps",
        "in_failure",
        "drop_from",
        "local_cb",
        "no_100",
        "relayed",
        "disable_6xx",
        "disable_failover",
        "timer_config",
        "reply_sent",
        "engine",
        "arrived",
        "expires",
        "loop_hash",
    )

    def __init__(self, txid: int, key: Any, request: Request) -> None:
        self.id = txid
        self.key = key
        self.request = request
        self.method = request.method
        self.is_invite = self.method == "INVITE"
        self.ruri = request.uri
        # the script version this transaction started under: its failure, branch and reply
        # routes run there even after a reload (docs/hot-reload.md)
        self.engine: Any = None
        self.src_ip = ""
        self.src_port = 0
        self.proto = "udp"
        self.socket: SocketInfo | None = None
        self.conn_id = 0
        self.reply_dest: Destination | None = None
        self.machine: Machine | None = None  # server machine (None for local requests)
        self.handles: dict[str, TimerHandle] = {}
        self.last_reply = b""  # bytes of the last reply sent upstream
        self.status = 0  # final status sent upstream (0 = none yet)
        self.reason = ""
        self.to_tag = ""
        self.branches: list[UacBranch] = []
        self.on_failure = ""
        self.on_reply = ""
        self.on_branch = ""
        self.on_branch_failure = ""
        self.fr = 0.0
        self.fr_inv = 0.0
        self.flags = 0
        self.canceled = False
        self.callbacks: CallbackList | None = None
        self.extra: dict[str, Any] = {}  # scratch space for other modules (dialog...)
        self.ended = False
        self.e2e_key: tuple[str, str, int] | None = None
        self.lumps: tuple[Any, ...] = ()  # the request's changes, for branches added later
        self.in_failure = False
        self.drop_from = 0  # branches below this index do not take part in reply selection
        self.local_cb: Any = None  # completion callback of a local request (send_request)
        self.no_100 = False
        self.relayed = False
        self.disable_6xx = False
        self.disable_failover = False  # t_set_disable_failover / t_relay_to_flags 0x04
        self.timer_config: Any = None
        self.reply_sent: Response | None = None  # the last reply sent upstream
        self.arrived = 0.0  # time.time() the request arrived (latency statistics), 0: local
        self.expires = 0.0  # the lifetime guard's deadline (timers' clock; engine._guard)
        self.loop_hash = ""  # of our Via branches, made by the first one (engine.branch_id)

    def pending_branches(self) -> list[UacBranch]:
        return [b for b in self.branches if b.status < 200]

    def __repr__(self) -> str:
        return f"<Transaction {self.id} {self.method} status={self.status} branches={len(self.branches)}>"


# -- identification -----------------------------------------------------------------------


def server_key(req: Request) -> tuple[str, ...]:
    """RFC 3261 §17.2.3: branch + sent-by + method (ACK matches its INVITE); the RFC 2543
    fallback uses the dialog fields and the top Via."""
    via = req.top_via
    method = "INVITE" if req.method == "ACK" else req.method
    b = via.branch
    if b and b.startswith(BRANCH_COOKIE):
        # asked three or four times per request (t_precheck_trans, t_check_trans, t_relay):
        # made once per parsed top Via (a changed Via is parsed anew, and so is the key)
        hit = req.memo("tm_key")
        if hit is not None and hit[0] is via and hit[1][3] == method:
            return hit[1]
        key = (b, via.host, str(via.port or ""), method)
        req.set_memo("tm_key", (via, key))
        return key
    cseq = req.cseq
    return (
        "2543",
        req.call_id,
        req.from_.tag or "",
        str(cseq.number),
        method,
        via.host,
        str(via.port or ""),
    )


def e2e_key(req: Request) -> tuple[str, str, int]:
    """What ties an ACK for a 2xx (a new transaction) to its INVITE."""
    return (req.call_id, req.from_.tag or "", req.cseq.number)


def loop_hash(req: Request, ruri: str) -> str:
    """RFC 3261 §16.6 step 8: the part of our branch that identifies the request as we got it
    (not its Via), so the same request coming back through us is recognised (§16.3 step 4).
    Kept by the transaction for its branches (``Transaction.loop_hash``); the loop check,
    which only a request with our Via below the top one needs, makes its own.

    The R-URI, the first Call-ID, CSeq and From values, the To tag, then every Route and
    every Proxy-Require value, joined by "|": gathered in one pass over the headers (keys
    compared with literals; a ``get`` per name was a scan and a name lookup each)."""
    call_id: str | None = None
    cseq: str | None = None
    from_: str | None = None
    routes: list[str] = []
    requires: list[str] = []
    for h in req.headers:
        key = h.key
        if key == "route":
            routes.append(h.value)
        elif key == "call-id":
            if call_id is None:
                call_id = h.value
        elif key == "cseq":
            if cseq is None:
                cseq = h.value
        elif key == "from":
            if from_ is None:
                from_ = h.value
        elif key == "proxy-require":
            requires.append(h.value)
    parts = [ruri, call_id or "", cseq or "", from_ or "", req.to.tag or ""]
    if routes:
        parts += routes
    if requires:
        parts += requires
    # CRC-32: as many bits as the 4-byte BLAKE2b it replaces, a third of its instructions
    # (a collision only matters between requests that both carry our Via)
    seed = "|".join(parts).encode("utf-8", "surrogateescape")
    # eight hex digits, zero-padded: hex() of the CRC with a 9th digit set, then cut (compiled,
    # format() with a spec is a call through the builtins, hex() is not)
    return hex(crc32(seed) | 0x100000000)[3:]


# -- requests a client transaction makes up ---------------------------------------------------


def _hop_headers(req: Request) -> tuple[Header | None, list[Header]]:
    """Our (top) Via and the Route headers of a request we sent."""
    via: Header | None = None
    routes: list[Header] = []
    for h in req.headers:
        if h.key == "via" and via is None:
            first = h.value.split(",", 1)[0].strip()
            via = Header(h.name, first)
        elif h.key == "route":
            routes.append(h)
    return via, routes


def build_ack(req: Request, reply: Response) -> Request:
    """RFC 3261 §17.1.1.3: the ACK for a non-2xx final reply, hop by hop."""
    via, routes = _hop_headers(req)
    hdrs: list[Header] = [via] if via else []
    hdrs.extend(routes)
    hdrs.append(Header("Max-Forwards", "70"))
    for key, name in (("from", "From"), ("call-id", "Call-ID")):
        v = req.get(key)
        if v is not None:
            hdrs.append(Header(name, v))
    to = reply.get("to") or req.get("to") or ""
    hdrs.append(Header("To", to))
    hdrs.append(Header("CSeq", f"{req.cseq.number} ACK"))
    hdrs.append(Header("Content-Length", "0"))
    return Request("ACK", req.uri, hdrs)


def build_cancel(req: Request, reason: str | None = None) -> Request:
    """RFC 3261 §9.1: CANCEL for a branch we sent (same Via branch, R-URI, Call-ID, From, To,
    CSeq number, Route)."""
    via, routes = _hop_headers(req)
    hdrs: list[Header] = [via] if via else []
    hdrs.extend(routes)
    hdrs.append(Header("Max-Forwards", "70"))
    for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID")):
        v = req.get(key)
        if v is not None:
            hdrs.append(Header(name, v))
    hdrs.append(Header("CSeq", f"{req.cseq.number} CANCEL"))
    if reason:
        hdrs.append(Header("Reason", reason))
    hdrs.append(Header("Content-Length", "0"))
    return Request("CANCEL", req.uri, hdrs)
