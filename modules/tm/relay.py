"""Requests into transactions: matching (t_check_trans), creating (t_newtran) and forking
(t_relay), plus the special cases CANCEL and ACK."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from ksr.core.context import Destination, MsgContext, RouteType
from ksr.core.resolver import ASK, default_proto, parse_query
from ksr.core.sending import Sender
from ksr.core.stateless import Stateless
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.message import Header, Request, ensure_content_length

from .api import TmCb, TmEvent, request_of
from .txn import (
    LOOP_HASH_LEN,
    Transaction,
    UacBranch,
    e2e_key,
    loop_hash,
    server_key,
)

if TYPE_CHECKING:
    from .engine import TmEngine
    from .replies import ReplyProcessor

log: Final = logging.getLogger("ksr.tm")

T_ON: Final = "tm_on"  # ctx.extra key: callback names set before the transaction exists
NO_FAILOVER: Final = "tm_no_failover"  # ctx.extra key: t_set_disable_failover(1) before t_relay


class Relayer:
    def __init__(self, eng: TmEngine, replies: ReplyProcessor) -> None:
        self.eng = eng
        self.replies = replies
        self.server = eng.server
        # the server's own sender and stateless half, called directly per branch (compiled:
        # a method of the interpreted Server is an attribute lookup and a generic call each);
        # None with a server that has none (a test's stand-in): then through the server
        sender = getattr(self.server, "sender", None)
        self.sender: Sender | None = sender if isinstance(sender, Sender) else None
        sl = getattr(self.server, "stateless", None)
        self.sl: Stateless | None = sl if isinstance(sl, Stateless) else None

    # -- matching ---------------------------------------------------------------------------
    def lookup(self, req: Request, method: str | None = None) -> Transaction | None:
        try:
            key = server_key(req)
        except RemoteProtocolError:
            return None
        if method is not None:
            key = key[:-1] + (method,) if key[0] != "2543" else key[:4] + (method,) + key[5:]
        return self.eng.by_key.get(key)

    def check_trans(self, ctx: MsgContext) -> int:
        if not ctx.msg.is_request:
            return 1 if ctx.tx is not None else -1
        if ctx.route in (RouteType.FAILURE, RouteType.BRANCH, RouteType.BRANCH_FAILURE):
            return 1
        req = request_of(ctx)
        if req.method == "CANCEL":
            inv = self.lookup(req, "INVITE")
            if inv is None:
                return -1
            ctx.extra["t_cancel_target"] = inv
            return 1
        if req.method == "ACK":
            return self._match_ack(ctx)
        tx = self.lookup(req)
        if tx is None:
            return -1
        self.retransmission(tx)
        return 0

    def retransmission(self, tx: Transaction) -> None:
        if tx.machine is not None and not tx.ended:
            self.eng.uas_actions(tx, tx.machine.handle("request"))

    def _match_ack(self, ctx: MsgContext) -> int:
        """0: ACK of a negative reply, absorbed; 1: ACK of a 2xx of a known INVITE; -1: unknown."""
        req = request_of(ctx)
        try:
            inv = self.eng.by_e2e.get(e2e_key(req))
        except RemoteProtocolError:
            inv = None
        if inv is None or not 200 <= inv.status < 300:
            # not the ACK of a 2xx we relayed (that one is a transaction of its own, RFC 3261
            # §17.1.1.3): the ACK of a negative reply matches its INVITE by the transaction key
            # (made only here: the 2xx ACK of each call needs no key)
            tx = self.lookup(req)
            if tx is not None and tx.status >= 300 and tx.machine is not None:
                self.eng.uas_actions(tx, tx.machine.handle("ack"))
                return 0
            if tx is not None:
                inv = tx
        if inv is None:
            return -1
        if not ctx.extra.get("tm_e2e_seen"):
            ctx.extra["tm_e2e_seen"] = True
            if self.eng.wants(inv, TmCb.E2E_ACK):
                self.eng.run_callbacks(inv, TmEvent(TmCb.E2E_ACK, ctx=ctx))
        return 1

    def precheck(self, ctx: MsgContext) -> int:
        if not ctx.msg.is_request:
            return -1
        req = request_of(ctx)
        if req.method in ("ACK", "CANCEL"):
            return -1
        return 1 if self.lookup(req) is not None else -1

    # -- creating ---------------------------------------------------------------------------
    def newtran(self, ctx: MsgContext, trying: bool = True) -> int:
        """1 created, 0 retransmission (absorbed), -1 error. ``trying=False``: the caller
        sends the automatic 100 Trying itself (``trying_due``, ``send_trying``)."""
        if ctx.tx is not None:
            return 1
        if not ctx.msg.is_request or ctx.route not in (RouteType.REQUEST,):
            return -1
        req = request_of(ctx)
        if req.method == "ACK":
            return -1
        try:
            key = server_key(req)
        except RemoteProtocolError:
            return -1
        old = self.eng.by_key.get(key)
        if old is not None:
            self.retransmission(old)
            return 0
        tx = self.eng.create_server_tx(ctx, key)
        if trying and self.trying_due(ctx):
            self.send_trying(tx, ctx)
        return 1

    def trying_due(self, ctx: MsgContext) -> bool:
        """Whether a new transaction for ``ctx`` answers 100 Trying at once (tm's auto_inv_100,
        not turned off for this request)."""
        return (
            request_of(ctx).method == "INVITE"
            and bool(self.eng.params.auto_inv_100)
            and not ctx.extra.get("tm_no_100")
        )

    def send_trying(self, tx: Transaction, ctx: MsgContext) -> None:
        self.eng.local_reply(tx, 100, "Trying")
        ctx.replied = 0

    def is_loop(self, req: Request, ruri: str) -> bool:
        """RFC 3261 §16.3 step 4: the request carries our Via with the branch we would compute
        for it now: it went around and came back unchanged."""
        if _one_via(req):
            return False  # no Via below the sender's (a request straight from a UA)
        try:
            vias = req.vias
        except RemoteProtocolError:
            return False
        mine = [v for v in vias[1:] if v.branch and self.server.is_myself_via(v.host, v.port)]
        if not mine:
            return False
        h = loop_hash(req, ruri)
        return any(v.branch and v.branch[7 : 7 + LOOP_HASH_LEN] == h for v in mine)

    # -- relaying ---------------------------------------------------------------------------
    def relay(
        self, ctx: MsgContext, uri: str | None = None, proto: str | None = None, flags: int = 0
    ) -> int:
        if not ctx.msg.is_request:
            return -1
        req = request_of(ctx)
        method = req.method
        if method == "ACK":
            return self.relay_ack(ctx, uri)
        if method == "CANCEL":
            return self.relay_cancel(ctx)
        tx: Transaction | None = ctx.tx  # typed: native attribute access from here on
        if tx is not None and tx.in_failure:
            self.take_failover_flag(ctx, tx, flags)
            n = self.add_branches(tx, ctx, uri, proto)
            return 1 if n else -1
        created = trying = False
        if tx is None:
            if self.is_loop(req, req.uri):
                ctx.extra["tm_no_100"] = True
                if self.newtran(ctx) == 1 and ctx.tx is not None:
                    self.eng.local_reply(ctx.tx, 482, "Loop Detected", ctx)
                return 0
            if flags & 1:
                ctx.extra["tm_no_100"] = True
            rc = self.newtran(ctx, trying=False)
            if rc <= 0:
                return rc if rc == 0 else -1
            tx = ctx.tx
            created = True
            trying = self.trying_due(ctx)
        assert tx is not None
        if tx.relayed or tx.status >= 200:
            return -1
        self.take_callbacks(ctx, tx)
        self.take_failover_flag(ctx, tx, flags)
        tx.ruri = ctx.ruri or tx.ruri
        tx.lumps = tuple(ctx.lumps)
        tx.flags = ctx.flags
        tx.extra["req_extra"] = ctx.extra  # failure routes share it
        if trying and tx.on_branch:  # a branch route sees the transaction as it always did
            self.send_trying(tx, ctx)
            trying = False
        try:
            n = self.add_branches(tx, ctx, uri, proto)
        finally:
            # The automatic 100 Trying of a transaction made here leaves right after the
            # INVITE: the same two messages, but the callee gets the INVITE one reply's
            # making and sending earlier (at a low rate, ~100 us of INVITE->200)
            if trying:
                self.send_trying(tx, ctx)
        if n == 0:
            if created:
                ctx.tx = None
                self.eng.destroy(tx)
            return -1
        tx.relayed = True
        return 1

    def take_callbacks(self, ctx: MsgContext, tx: Transaction) -> None:
        names: dict[str, str] | None = ctx.extra.get(T_ON)
        if names:
            for attr, name in names.items():
                setattr(tx, attr, name)

    def take_failover_flag(self, ctx: MsgContext, tx: Transaction, flags: int) -> None:
        """t_relay_to_flags 0x04 or t_set_disable_failover(1): no DNS failover for this one."""
        if flags & 4 or ctx.extra.get(NO_FAILOVER):
            tx.disable_failover = True

    def add_branches(
        self, tx: Transaction, ctx: MsgContext, uri: str | None, proto: str | None
    ) -> int:
        targets: list[tuple[str, str | None, int, Any]] = [
            (ctx.ruri or request_of(ctx).uri, ctx.dst_uri, ctx.bflags, ctx.send_socket)
        ]
        targets.extend((b.uri, b.dst_uri, b.flags, b.socket) for b in ctx.branches)
        ctx.branches = []
        sent = 0
        for ruri, du, bflags, sock in targets:
            if self.send_branch(tx, ctx, ruri, du, bflags, sock, uri, proto):
                sent += 1
        return sent

    def send_branch(
        self,
        tx: Transaction,
        ctx: MsgContext,
        ruri: str,
        du: str | None,
        bflags: int,
        sock: Any,
        uri: str | None,
        proto: str | None,
    ) -> bool:
        idx = len(tx.branches)
        saved = (
            ctx.ruri,
            ctx.dst_uri,
            ctx.bflags,
            len(ctx.lumps),
            ctx.route,
            ctx.branch_idx,
            ctx.send_socket,
        )
        ctx.ruri, ctx.dst_uri, ctx.bflags, ctx.branch_idx = ruri, du, bflags, idx
        if sock is not None:
            ctx.send_socket = sock
        try:
            if tx.on_branch:
                ctx.route = RouteType.BRANCH
                ctx.drop = False
                self.server.run_route(ctx, tx.on_branch)
                if ctx.drop:
                    ctx.drop = False
                    return False
            return self._build_and_send(tx, ctx, idx, uri, proto)
        finally:
            (
                ctx.ruri,
                ctx.dst_uri,
                ctx.bflags,
                n_lumps,
                ctx.route,
                ctx.branch_idx,
                ctx.send_socket,
            ) = saved
            del ctx.lumps[n_lumps:]

    def _build_and_send(
        self, tx: Transaction, ctx: MsgContext, idx: int, uri: str | None, proto: str | None
    ) -> bool:
        ruri = ctx.ruri or tx.ruri
        target = uri or ctx.dst_uri or ruri
        found = self.server.resolve_now_all(target)
        if not found:
            log.warning("t_relay: cannot resolve %s", target)
            # what sl_reply_error() answers next, as Kamailio does for E_BAD_ADDRESS
            ctx.last_error = (478, "Unresolvable destination (478/SL)")
            return False
        resolving = found == ASK
        alt: tuple[Destination, ...] = ()
        if isinstance(found, list):
            dest, alt = found[0], _forced(found[1:], proto)
        else:  # DNS is asked in a task: the branch is prepared now and sent once it answers
            q = parse_query(target)
            assert q is not None
            dest = Destination(default_proto(q), "", 0, target)
        if proto:
            dest = Destination(proto, dest.host, dest.port, dest.uri)
        sender = self.sender
        if sender is not None:
            sock = sender.socket_for(dest.proto, ctx)
        else:
            sock = self.server.socket_for(dest.proto, ctx)
        if sock is None:
            log.warning("t_relay: no %s socket to reach %s", dest.proto, target)
            return False
        out = ctx.apply_lumps(out_socket=sock)
        assert isinstance(out, Request)
        bid = self.eng.branch_id(tx, idx)
        sl = self.sl
        if sl is not None:
            via = sl.make_via(ctx, sock, bid)
        else:
            via = self.server.make_via(ctx, sock, bid)
        out.headers.insert(0, Header("Via", via))
        if dest.proto != "udp":
            ensure_content_length(out)
        b = UacBranch(tx, idx, ruri, ctx.dst_uri)
        b.bid, b.dest, b.sock, b.flags, b.alt = bid, dest, sock, ctx.bflags, alt
        tx.branches.append(b)
        if resolving:
            forced = proto
            self.server.resolve_later_all(
                target, lambda found: self._resolved(b, out, found, forced, ctx, target)
            )
            if self.eng.wants(tx, TmCb.REQUEST_FWDED):
                self.eng.run_callbacks(tx, TmEvent(TmCb.REQUEST_FWDED, ctx=ctx, branch=b))
            return True
        if not self.eng.start_branch(b, out, dest.proto != "udp"):
            log.warning("t_relay: sending to %s:%s:%d failed", dest.proto, dest.host, dest.port)
            b.status, b.local = 503, True
            self.eng.drop_branch(b)
            if b.machine is not None:
                b.machine.state = "terminated"
            failover = self.eng.failover(b)  # the next destination, if any and allowed
            if failover is None:
                return False
            b = failover
        if self.eng.wants(tx, TmCb.REQUEST_FWDED):
            self.eng.run_callbacks(tx, TmEvent(TmCb.REQUEST_FWDED, ctx=ctx, branch=b))
        self.server.core_stats.fwd_requests.inc()
        return True

    def _resolved(
        self,
        b: UacBranch,
        out: Request,
        found: list[Destination],
        proto: str | None,
        ctx: MsgContext,
        target: str,
    ) -> None:
        """DNS answered for a branch prepared by t_relay: send it, or end it as failed."""
        tx = b.tx
        if tx.ended or not b.pending:
            return
        if b.cancel_pending or tx.canceled or (tx.is_invite and 200 <= tx.status < 300):
            self._end_unsent(b, 487, "")  # CANCELed (or answered) while resolving: not sent
            return
        if not found:
            log.warning("t_relay: cannot resolve %s", target)
            self._end_unsent(b, 478, "Unresolvable destination")
            return
        assert b.dest is not None
        first = found[0]
        dest = Destination(proto or first.proto, first.host, first.port, target)
        b.alt = _forced(found[1:], proto)
        if dest.proto != b.dest.proto:  # NAPTR chose the transport: our Via says which
            sock = self.server.socket_for(dest.proto, ctx)
            if sock is None:
                log.warning("t_relay: no %s socket to reach %s", dest.proto, target)
                self._end_unsent(b, 478, "Unresolvable destination")
                return
            b.sock = sock
            out.headers[0] = Header("Via", self.server.make_via(ctx, sock, b.bid))
            if dest.proto != "udp":
                ensure_content_length(out)
        b.dest = dest
        if not self.eng.start_branch(b, out, dest.proto != "udp"):
            log.warning("t_relay: sending to %s:%s:%d failed", dest.proto, dest.host, dest.port)
            self.eng.drop_branch(b)
            if b.machine is not None:
                b.machine.state = "terminated"
            self._end_unsent(b, 503, "Service Unavailable")
            return
        self.server.core_stats.fwd_requests.inc()

    def _end_unsent(self, b: UacBranch, code: int, reason: str) -> None:
        """A branch that was never sent ends with a status made up here (failure route and
        reply selection go on as for any failed branch)."""
        b.status, b.local, b.reason = code, True, reason
        if self.eng.on_branch_final is not None:
            self.eng.on_branch_final(b, None)

    # -- CANCEL and ACK ---------------------------------------------------------------------
    def relay_cancel(self, ctx: MsgContext) -> int:
        inv = ctx.extra.get("t_cancel_target") or self.lookup(request_of(ctx), "INVITE")
        if inv is None or inv.ended:
            return 1 if self.server.forward_stateless(ctx, None) else -1
        self.server.send_reply_stateless(ctx, 200, "canceling")
        if inv.status >= 200:
            return 1
        inv.canceled = True
        if self.eng.wants(inv, TmCb.E2E_CANCEL):
            self.eng.run_callbacks(inv, TmEvent(TmCb.E2E_CANCEL, ctx=ctx))
        if not inv.branches:
            self.eng.local_reply(inv, 487, "Request Terminated")
            return 1
        self.eng.cancel_branches(inv, None, request_of(ctx).get("reason"))
        for b in list(inv.branches):
            if b.pending and b.machine is None and not inv.ended:
                self._end_unsent(b, 487, "")  # still resolving: never sent, nothing to CANCEL
        return 1

    def relay_ack(self, ctx: MsgContext, uri: str | None) -> int:
        rc = self._match_ack(ctx)
        if rc == 0:
            return 1  # ACK of a negative reply we sent: it ends here (hop by hop)
        return 1 if self.server.forward_stateless(ctx, uri) else -1


def _one_via(req: Request) -> bool:
    """Whether the request carries a single Via value (read without parsing the Vias; the
    message's own lookups run compiled, a loop here ran ~12 times in the interpreter)."""
    first = req.get("via")
    return first is not None and "," not in first and req.count("via") == 1


def _forced(dests: list[Destination], proto: str | None) -> tuple[Destination, ...]:
    """Failover destinations, with the transport a t_relay_to_* call forced."""
    if proto is None:
        return tuple(dests)
    return tuple(Destination(proto, d.host, d.port, d.uri) for d in dests)
