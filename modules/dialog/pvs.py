"""``$dlg(attr)``, ``$dlg_ctx(attr)`` and ``$dlg_var(key)``.

The current dialog of a message is the one ``dlg_manage`` created or matched, the one an
in-dialog request or reply belongs to, or the one an event callback runs for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ksr.core.context import MsgContext
from ksr.core.pv import PvRegistry, Value
from ksr.sip.dialog_state import DlgState

_ACTIVE = (DlgState.CONFIRMED_NA, DlgState.CONFIRMED)

if TYPE_CHECKING:
    from .manager import DialogManager
    from .model import Dialog


def _dlg_attr(d: Dialog, attr: str) -> Value:
    simple: dict[str, Any] = {
        "h_id": d.h_id,
        "h_entry": d.h_entry,
        "ref": d.ref,
        "state": int(d.state),
        "dflags": d.dflags,
        "sflags": d.sflags,
        "callid": d.callid,
        "to_uri": d.to_uri,
        "to_tag": d.callee.tag or None,
        "from_uri": d.from_uri,
        "from_tag": d.caller.tag,
        "toroute": 0,
        "toroute_name": d.timeout_route or None,
        "lifetime": d.lifetime,
        "start_ts": int(d.start_ts),
        "init_ts": int(d.init_ts),
        "end_ts": int(d.end_ts),
        "to_cseq": d.callee.cseq,
        "from_cseq": d.caller.cseq,
        "to_contact": d.callee.contact or None,
        "from_contact": d.caller.contact or None,
        "to_bindaddr": d.callee.socket or None,
        "from_bindaddr": d.caller.socket or None,
        "to_rs": d.callee.route_set or None,
        "from_rs": d.caller.route_set or None,
        "status": d.status,
        "end_reason": d.end_reason or None,
    }
    return simple.get(attr)


def register(pv: PvRegistry, mgr: DialogManager) -> None:
    def dlg_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        d = mgr.current(ctx)
        return None if d is None else _dlg_attr(d, arg)

    def ctx_store(ctx: MsgContext) -> dict[str, Any]:
        store: dict[str, Any] = ctx.extra.setdefault("dlg_ctx", {})
        return store

    def ctx_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        c = ctx_store(ctx)
        d = mgr.current(ctx)
        if arg == "set":
            return 1 if d is not None else 0
        if arg == "dir":
            return int(ctx.extra.get("dlg_dir", 0))
        if arg == "timeout":
            return d.lifetime if d is not None else int(c.get("timeout", 0))
        if arg == "timeout_bye":
            return int(d.timeout_bye) if d is not None else int(c.get("timeout_bye", 0))
        if arg == "timeout_route":
            v = d.timeout_route if d is not None else c.get("timeout_route", "")
            return v or None
        if arg == "timeout_route_id":
            return 0
        if arg == "flags":
            return d.sflags if d is not None else int(c.get("flags", 0))
        if arg == "on":
            return int(c.get("on", 0))
        return None

    def ctx_set(ctx: MsgContext, arg: str, value: Value) -> bool:
        c = ctx_store(ctx)
        d = mgr.current(ctx)
        if arg in ("on", "flags", "timeout", "timeout_bye"):
            try:
                n = int(value or 0)
            except (TypeError, ValueError):
                return False
            c[arg] = n
            if d is not None:
                if arg == "timeout":
                    mgr.set_timeout(d, n)
                elif arg == "timeout_bye":
                    d.timeout_bye = bool(n)
                elif arg == "flags":
                    d.sflags = n
            return True
        if arg == "timeout_route":
            c[arg] = "" if value is None else str(value)
            if d is not None:
                d.timeout_route = c[arg]
            return True
        return False

    def var_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        key = pv.expand_arg(ctx, arg)
        d = mgr.current(ctx)
        if d is None:
            return ctx.extra.get("dlg_vars_pending", {}).get(key)
        return d.variables.get(key)

    def var_set(ctx: MsgContext, arg: str, value: Value) -> bool:
        key = pv.expand_arg(ctx, arg)
        d = mgr.current(ctx)
        target: dict[str, str] = (
            d.variables if d is not None else ctx.extra.setdefault("dlg_vars_pending", {})
        )
        if value is None:
            target.pop(key, None)
        else:
            target[key] = str(value)
        if d is not None:
            mgr.persist(d)
        return True

    pv.register("dlg", dlg_get)
    pv.register("dlg_ctx", ctx_get, ctx_set)
    pv.register("dlg_var", var_get, var_set)
    pv.register("DLG_count", lambda c, a, i: mgr.count(*_ACTIVE))
    pv.register("DLG_status", lambda c, a, i: int(d.state) if (d := mgr.current(c)) else None)
    pv.register("DLG_lifetime", lambda c, a, i: d.lifetime if (d := mgr.current(c)) else None)
