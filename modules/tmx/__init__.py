"""tmx: extra transaction functions (route-type tests, cancel helpers) on top of tm."""

from __future__ import annotations

from typing import Any

from ksr.core.context import MsgContext, RouteType
from ksr.core.module import Module
from ksr.kemi.registry import Route, kemi
from ksr.modules.tm.api import TmApi


class Tmx(Module):
    name = "tmx"
    depends = ("tm",)

    def init(self) -> None:
        self.tm = self.require("tm", TmApi)

    @kemi(via=lambda tmx: tmx.tm.precheck)
    def t_precheck_trans(self, ctx: MsgContext) -> int:
        """1 if this request (a retransmission) is already being processed; not for ACK/CANCEL."""
        return self.tm.precheck(ctx)

    @kemi()
    def t_is_request_route(self, ctx: MsgContext) -> int:
        """1 in the request route."""
        return 1 if ctx.route == RouteType.REQUEST else -1

    @kemi()
    def t_is_reply_route(self, ctx: MsgContext) -> int:
        """1 in a reply route (core or tm onreply)."""
        return 1 if ctx.route in (RouteType.REPLY, RouteType.ONREPLY) else -1

    @kemi()
    def t_is_failure_route(self, ctx: MsgContext) -> int:
        """1 in a failure route."""
        return 1 if ctx.route == RouteType.FAILURE else -1

    @kemi()
    def t_is_branch_route(self, ctx: MsgContext) -> int:
        """1 in a branch route."""
        return 1 if ctx.route == RouteType.BRANCH else -1

    @kemi()
    def t_flush_flags(self, ctx: MsgContext) -> int:
        """Copy the message flags into the transaction."""
        if ctx.tx is None:
            return -1
        ctx.tx.flags = ctx.flags
        return 1

    @kemi()
    def t_flush_xflags(self, ctx: MsgContext) -> int:
        """Extended flags are kept on the message only: 1 if there is a transaction."""
        return 1 if ctx.tx is not None else -1

    @kemi(routes=Route.TM_ONREPLY)
    def t_cancel_branches(self, ctx: MsgContext, which: str) -> int:
        """t_cancel_branches("all"|"others"|"this") from an onreply route."""
        tx = ctx.tx
        if tx is None or ctx.is_request:
            return -1
        tm = self.tm
        cur = tx.branches[ctx.branch_idx] if 0 <= ctx.branch_idx < len(tx.branches) else None
        if which == "all":
            tm.cancel_branches(tx, None)
        elif which == "others":
            tm.cancel_branches(tx, cur)
        elif which == "this" and cur is not None:
            tm.send_cancel(cur)
        else:
            return -1
        return 1

    def _find(self, callid: str, cseq: str) -> Any:
        for tx in self.tm.transactions():
            if tx.is_invite and tx.request.get("call-id") == callid:
                num = cseq.split()[0] if cseq.strip() else ""
                if not num or str(tx.request.cseq.number) == num:
                    return tx
        return None

    @kemi()
    def t_cancel_callid(self, ctx: MsgContext, callid: str, cseq: str, flag: int) -> int:
        """t_cancel_callid(callid, cseq, flag): CANCEL the INVITE transaction with this Call-ID."""
        return self.t_cancel_callid_reason(ctx, callid, cseq, flag, 0)

    @kemi()
    def t_cancel_callid_reason(
        self, ctx: MsgContext, callid: str, cseq: str, flag: int, rcode: int
    ) -> int:
        """Like t_cancel_callid; rcode > 0 also answers the caller with it."""
        tx = self._find(callid, cseq)
        if tx is None or tx.status >= 200:
            return -1
        tx.canceled = True
        self.tm.cancel_branches(tx, None)
        if rcode >= 300:
            self.tm.local_reply(tx, rcode, "Request Terminated" if rcode == 487 else "")
        return 1

    @kemi()
    def t_reply_callid(
        self, ctx: MsgContext, callid: str, cseq: str, code: int, reason: str
    ) -> int:
        """Reply to the transaction with this Call-ID and CSeq."""
        tx = self._find(callid, cseq)
        if tx is None:
            return -1
        return 1 if self.tm.local_reply(tx, code, reason) else -1

    @kemi()
    def t_drop(self, ctx: MsgContext) -> int:
        """Drop the transaction, answering 500."""
        return self.t_drop_rcode(ctx, 500)

    @kemi()
    def t_drop_rcode(self, ctx: MsgContext, code: int) -> int:
        """Drop the transaction, answering with code."""
        tx = ctx.tx
        if tx is None:
            return -1
        if tx.status < 200:
            self.tm.local_reply(tx, code, "")
        return 1


MODULE = Tmx
