"""tm's pseudo-variables: $T_reply_code, $T_reply_reason, $T_branch_idx, $T(...), $T_req(...),
$T_rpl(...), $T_inv(...)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ksr.core.context import MsgContext, RouteType
from ksr.core.pv import PvRegistry, Value

if TYPE_CHECKING:
    from . import Tm


def register_pvs(reg: PvRegistry, tm: Tm) -> None:
    def reply_code(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        return tm.status_code(ctx)

    def reply_reason(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        if not ctx.is_request:
            return ctx.reply.reason
        b = ctx.extra.get("t_branch")
        if b is not None and b.reply is not None:
            return str(b.reply.reason)
        tx = ctx.tx
        if tx is not None and tx.reply_sent is not None:
            return str(tx.reply_sent.reason)
        if tx is not None and tx.status >= 200:
            return tx.reason  # the final reply, once the transaction let its copy go
        return None

    def branch_idx(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        if ctx.route in (
            RouteType.BRANCH,
            RouteType.ONREPLY,
            RouteType.FAILURE,
            RouteType.BRANCH_FAILURE,
        ):
            return ctx.branch_idx
        return -1 if ctx.tx is None else ctx.branch_idx

    def t_attr(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        tx = ctx.tx
        name = arg.strip()
        if name == "reply_code":
            return reply_code(ctx, "", None)
        if name == "reply_reason":
            return reply_reason(ctx, "", None)
        if name == "branch_index":
            return ctx.branch_idx
        if tx is None:
            return None
        if name in ("id_index", "id_label"):
            return tx.id
        if name == "reply_type":
            b = ctx.extra.get("t_branch")
            return 1 if b is not None and b.local else 0
        if name == "reply_last":
            codes = [b.status for b in tx.branches if b.status]
            return codes[-1] if codes else 0
        return None

    def in_request(which: str) -> Any:
        def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
            tx = ctx.tx
            if which == "inv":
                tx = ctx.extra.get("t_cancel_target") or (
                    tm.relayer.lookup(ctx.request, "INVITE") if ctx.is_request else None
                )
            if tx is None:
                return None
            if which == "rpl":
                b = ctx.extra.get("t_branch")
                msg = b.reply if b is not None else None
                if msg is None:
                    return None
            else:
                msg = tx.request
            sub = MsgContext(ctx.server, msg, tx.src_ip, tx.src_port, tx.socket, tx.conn_id)
            sub.tx = tx
            return ctx.server.pv.get(sub, arg)

        return get

    reg.register("T_reply_code", reply_code)
    reg.register("T_reply_reason", reply_reason)
    reg.register("T_branch_idx", branch_idx)
    reg.register("T", t_attr)
    reg.register("T_req", in_request("req"))
    reg.register("T_rpl", in_request("rpl"))
    reg.register("T_inv", in_request("inv"))
