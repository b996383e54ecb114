"""Replies from the branches: onreply routes, relaying, choosing the final reply (RFC 3261
§16.7), branch-failure and failure routes (serial forking)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from ksr.core.context import MsgContext, RouteType
from ksr.sip.builders import reply_upstream
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.message import Response
from ksr.sip.received import sent_headers
from ksr.sip.transaction import DELIVER, START, reply_event

from .api import TmCb, TmEvent, reply_of
from .txn import Transaction, UacBranch

if TYPE_CHECKING:
    from .engine import TmEngine

log: Final = logging.getLogger("ksr.tm")


def _has(actions: tuple[tuple[str, str], ...], op: str, arg: str) -> bool:
    """Whether ``(op, arg)`` is one of the actions (compiled, ``in`` on the tuple of tuples
    compared each action as a tuple: ~800 instructions per reply)."""
    for a_op, a_arg in actions:
        if a_op == op and a_arg == arg:
            return True
    return False


class ReplyProcessor:
    """The TU half of a stateful proxy: what to do with each reply of each branch."""

    def __init__(self, eng: TmEngine) -> None:
        self.eng = eng
        self.server = eng.server
        eng.on_branch_final = self.branch_final

    # -- entry point (Server.reply_handlers) ---------------------------------------------------
    def handle_reply(self, ctx: MsgContext) -> bool:
        """True if the reply belonged to a transaction (handled here), False to let the core
        forward it statelessly."""
        rpl = reply_of(ctx)
        try:
            via = rpl.top_via
            method = rpl.cseq.method
        except RemoteProtocolError:
            return False
        b = self.eng.by_branch.get((via.branch or "", method))
        if b is None or b.machine is None:
            return False
        self.eng.c_rpl_received.inc()
        if method == "CANCEL":
            self.eng.uac_actions(b, b.machine.handle(reply_event(rpl.status)))
            return True
        tx = b.tx
        ctx.tx = tx
        ctx.branch_idx = b.idx
        actions = b.machine.handle(reply_event(rpl.status))
        if rpl.status >= 300:
            self.eng.ack_for(b, rpl)
        if not _has(actions, DELIVER, "reply"):  # the machine passes no reply to the TU
            self.eng.uac_actions(b, actions)  # absorbed (e.g. resend the ACK)
            return True
        self.eng.uac_actions(b, actions)
        first_reply = not b.replied
        b.replied = True
        if tx.machine is None:  # a local request: tell its owner
            if rpl.status >= 200 and b.pending:
                b.status, b.reply = rpl.status, rpl
                if tx.local_cb is not None:
                    try:
                        tx.local_cb(rpl.status, rpl)
                    except Exception:
                        log.exception("send_request callback failed")
            return True
        if b.status >= 200 and rpl.status >= 200 and not (rpl.status < 300 and tx.is_invite):
            return True  # the branch already ended (timed out); late final reply
        if self.eng.wants(tx, TmCb.REPLY_IN):
            self.eng.run_callbacks(
                tx, TmEvent(TmCb.REPLY_IN, ctx=ctx, branch=b, code=rpl.status, reply=rpl)
            )
        if tx.on_reply:
            ctx.route = RouteType.ONREPLY
            ctx.flags = tx.flags
            self.server.run_route(ctx, tx.on_reply)
            tx.flags = ctx.flags
            if ctx.drop and rpl.status < 200:
                return True
        if rpl.status < 200:
            b.status = max(b.status, rpl.status)
            if first_reply and b.cancel_pending:
                self.eng.send_cancel(b)
            elif (
                self.eng.params.restart_fr_on_each_reply
                and "C" in b.handles
                and not _has(actions, START, "C")
            ):
                # Timer C restarts on every provisional (RFC 3261 §16.7 step 2); the first one
                # started it just now
                self.eng.start_timer(
                    b.handles, "C", b.machine.interval("C"), self.eng.fire_uac, (b, "C")
                )
            if rpl.status > 100 and tx.status < 200:
                self.relay(tx, ctx, rpl)
            return True
        self.branch_final(b, ctx)
        return True

    # -- relaying -------------------------------------------------------------------------
    def relay(self, tx: Transaction, ctx: MsgContext | None, rpl: Response) -> bool:
        got = ctx.apply_lumps(rpl) if ctx is not None and ctx.lumps else rpl
        out = reply_upstream(got)
        if not any(h.key == "via" for h in out.headers):
            # the next hop answered with our Via only (e.g. a 487 copying its CANCEL's Via):
            # never send a reply without Via; it gets the Vias of the request (RFC 3261 §8.2.6.2)
            req = tx.request
            vias = [h for h in sent_headers(req, req.headers) if h.key == "via"]
            out = Response(out.status, out.reason, vias + list(out.headers), out.body, out.version)
        return self.eng.send_upstream(tx, out, False, ctx)

    def branch_final(self, b: UacBranch, ctx: MsgContext | None) -> None:
        """A branch ended: with a final reply (ctx) or a timeout (ctx None, status 408)."""
        tx = b.tx
        if ctx is not None:
            rpl = reply_of(ctx)
            was_pending = b.pending
            b.status, b.reply = rpl.status, rpl
            if rpl.status < 300:
                # Every 2xx goes upstream (RFC 3261 §16.7 step 5); the others are cancelled.
                self.relay(tx, ctx, rpl)
                if was_pending and tx.is_invite:
                    self.eng.cancel_branches(tx, b)
                return
        else:
            if tx.machine is None:
                if tx.local_cb is not None:
                    try:
                        tx.local_cb(408, None)
                    except Exception:
                        log.exception("send_request callback failed")
                return
            rpl = None
        if self.transport_failure(b, ctx) and self.eng.failover(b) is not None:
            return  # DNS failover: the next destination has the request now
        code = b.status
        if code >= 600 and tx.is_invite and not tx.disable_6xx:
            self.eng.cancel_branches(tx, b)
        if tx.on_branch_failure and tx.status < 200:
            fctx = self.failure_context(tx, b, RouteType.BRANCH_FAILURE)
            self.server.run_route(fctx, tx.on_branch_failure)
        if tx.status >= 200 or tx.in_failure:
            return
        if tx.pending_branches():
            return
        self.complete(tx)

    def transport_failure(self, b: UacBranch, ctx: MsgContext | None) -> bool:
        """Whether ``b`` failed in a way DNS failover retries on another destination: no reply
        at all before Timer B/F, a send error, or a 503 reply (``failover_on_503``); and the
        transaction still wants an answer."""
        tx = b.tx
        if not b.alt or tx.status >= 200 or tx.canceled or b.cancel_pending:
            return False
        if ctx is not None:
            return b.status == 503 and bool(self.eng.params.failover_on_503)
        if b.timed_out:
            return not b.replied
        return b.local and b.status == 503  # the request could not be sent

    def best_branch(self, tx: Transaction) -> UacBranch | None:
        """RFC 3261 §16.7 step 6: a 6xx wins; else the lowest class (3xx before 4xx before
        5xx); replies that really arrived win over timeouts made up here."""
        best: UacBranch | None = None
        best_rank = (99, 0, 0)
        for b in tx.branches[tx.drop_from :]:
            if b.status < 300:
                continue
            cls = b.status // 100
            rank = (0 if cls == 6 else cls, 1 if b.local else 0, b.idx)
            if rank < best_rank:
                best, best_rank = b, rank
        return best

    def complete(self, tx: Transaction) -> None:
        """Every branch has a final negative reply: failure route, then the best reply."""
        best = self.best_branch(tx)
        if self.eng.wants(tx, TmCb.FAILURE):
            self.eng.run_callbacks(
                tx, TmEvent(TmCb.FAILURE, branch=best, code=best.status if best else 500)
            )
        if tx.on_failure:
            name, tx.on_failure = tx.on_failure, ""  # it runs once unless the route sets it again
            n_before = len(tx.branches)
            fctx = self.failure_context(tx, best, RouteType.FAILURE)
            tx.in_failure = True
            try:
                self.server.run_route(fctx, name)
            finally:
                tx.in_failure = False
            tx.flags = fctx.flags
            if tx.status >= 200:
                return
            if len(tx.branches) > n_before and tx.pending_branches():
                return  # serial forking: new branches are running
        self.send_best(tx)

    def send_best(self, tx: Transaction) -> None:
        best = self.best_branch(tx)
        if best is None:
            self.eng.local_reply(tx, 500, "Server Internal Error")
            return
        if best.reply is None and best.reason and not tx.canceled:
            self.eng.local_reply(tx, best.status, best.reason)  # e.g. 478: DNS failed
            return
        if best.reply is None:
            code = 487 if tx.canceled else 408
            self.eng.local_reply(
                tx, code, "Request Terminated" if code == 487 else "Request Timeout"
            )
            return
        self.relay(tx, None, best.reply)

    def failure_context(self, tx: Transaction, b: UacBranch | None, route: str) -> MsgContext:
        """The faked request a failure route works on (Kamailio: a copy of the request)."""
        ctx = MsgContext(self.server, tx.request, tx.src_ip, tx.src_port, tx.socket, tx.conn_id)
        ctx.route = route
        ctx.ruri = tx.ruri
        ctx.tx = tx
        ctx.flags = tx.flags
        ctx.lumps = list(tx.lumps)
        shared = tx.extra.get("req_extra")
        if shared is not None:
            ctx.extra = shared
        ctx.branch_idx = b.idx if b is not None else 0
        ctx.extra["t_branch"] = b
        return ctx
