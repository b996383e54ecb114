"""Variable pseudo-variables: ``$avp``, ``$var``, ``$vn``, ``$shv``, ``$xavp``, ``$xavu``, ``$xavi``.

AVPs are stacks per message (index 0 the newest value); ``$var`` lives per worker and is never
null (unset gives 0); ``$shv`` is shared by the server; xavps are described in ``xavp.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .pv import ALL, Getter, Setter, Value, split_index
from .xavp import XavpName, XavpStore, parse_name

if TYPE_CHECKING:
    from .context import MsgContext
    from .pv import PvRegistry


def avp_name(arg: str) -> str:
    """``$avp(s:x)`` and ``$avp(x)`` are the same AVP."""
    a = arg.strip()
    return a[2:] if a.startswith("s:") else a


def stack_get(stack: list[int | str] | None, idx: int | None) -> Value:
    """Value at a Kamailio index of a newest-last list (0 newest, -1 oldest, ALL joined)."""
    if not stack:
        return None
    if idx is None:
        return stack[-1]
    if idx == ALL:
        return ",".join(str(x) for x in reversed(stack))
    pos = len(stack) - 1 - idx if idx >= 0 else -idx - 1
    return stack[pos] if 0 <= pos < len(stack) else None


def _avp_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    return stack_get(ctx.avps.get(avp_name(arg)), idx)


def _avp_set(ctx: MsgContext, arg: str, value: Value) -> bool:
    raw, idx = split_index(arg)
    name = avp_name(raw)
    stack = ctx.avps.get(name)
    if value is None:
        if not stack:
            return True
        if idx == ALL:
            del ctx.avps[name]
            return True
        pos = len(stack) - 1 - (idx or 0) if (idx or 0) >= 0 else -(idx or 0) - 1
        if 0 <= pos < len(stack):
            del stack[pos]
        if not stack:
            del ctx.avps[name]
        return True
    if idx is not None and idx != ALL and stack:
        pos = len(stack) - 1 - idx if idx >= 0 else -idx - 1
        if not 0 <= pos < len(stack):
            return False
        stack[pos] = value
        return True
    if idx == ALL:
        ctx.avps[name] = [value]  # $(avp(x)[*]) = v replaces every value
        return True
    ctx.avps.setdefault(name, []).append(value)
    return True


def _var_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    return ctx.server.script_vars.get(arg, 0)


def _var_set(ctx: MsgContext, arg: str, value: Value) -> bool:
    ctx.server.script_vars[split_index(arg)[0]] = 0 if value is None else value
    return True


def _vn_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    return ctx.server.script_vars_null.get(arg)


def _vn_set(ctx: MsgContext, arg: str, value: Value) -> bool:
    ctx.server.script_vars_null[split_index(arg)[0]] = value
    return True


def _shv_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    return ctx.server.shared_vars.get(arg, 0)


def _shv_set(ctx: MsgContext, arg: str, value: Value) -> bool:
    ctx.server.shared_vars[split_index(arg)[0]] = 0 if value is None else value
    return True


def xavp_store(ctx: MsgContext, kind: str = "xavp") -> XavpStore:
    """The xavp (``ctx.xavps``), xavu or xavi family of a message."""
    if kind == "xavp":
        return XavpStore(ctx.xavps)
    data = ctx.extra.setdefault(kind, {})
    return XavpStore(data, fold_case=kind == "xavi", single=kind == "xavu")


def _xname(arg: str, idx: int | None) -> XavpName | None:
    n = parse_name(arg)
    if n is not None and idx is not None:
        # $(xavp(r=>f)[i]) indexes the field; $(xavp(r)[i]) the root item
        if n.field is None:
            n.ridx = idx
        else:
            n.fidx = idx
    return n


def _xget(kind: str) -> Getter:
    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        n = _xname(arg, idx)
        return xavp_store(ctx, kind).get(n) if n else None

    return get


def _xset(kind: str) -> Setter:
    def set_(ctx: MsgContext, arg: str, value: Value) -> bool:
        raw, idx = split_index(arg)
        n = _xname(raw, idx)
        return xavp_store(ctx, kind).set(n, value) if n else False

    return set_


def register_vars(r: PvRegistry) -> None:
    r.register("avp", _avp_get, _avp_set)
    r.register("var", _var_get, _var_set)
    r.register("vn", _vn_get, _vn_set)
    r.register("shv", _shv_get, _shv_set)
    for kind in ("xavp", "xavu", "xavi"):
        r.register(kind, _xget(kind), _xset(kind))
