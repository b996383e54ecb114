"""The xavp/xavu/xavi function family of KSR.pvx, generated for the three kinds.

Each kind gets ``<kind>_seti/sets/get/gete/getw/rm/is_null/child_*`` (xavp and xavi also
``getd/getd_p1/get_keys/rm_all``), with Kamailio's returns: 1 done, -1 not found/failed,
``is_null`` 1 when missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ksr.core.context import MsgContext
from ksr.core.pv_vars import xavp_store
from ksr.core.xavp import XavpName
from ksr.kemi.registry import XVal, kemi

Fn = Callable[..., Any]


def _missing(v: XVal, mode: str) -> XVal:
    if v is None:
        return {"get": None, "gete": "", "getw": "<null>"}[mode]
    return v


def _ops(kind: str) -> dict[str, tuple[Fn, dict[str, Any]]]:
    """name -> (function, annotations) for one kind."""

    def seti(self: Any, ctx: MsgContext, rname: str, ival: int) -> int:
        return 1 if xavp_store(ctx, kind).set(XavpName(rname, None, None, None), ival) else -1

    def sets(self: Any, ctx: MsgContext, rname: str, sval: str) -> int:
        return 1 if xavp_store(ctx, kind).set(XavpName(rname, None, None, None), sval) else -1

    def getter(mode: str) -> Fn:
        def get(self: Any, ctx: MsgContext, rname: str) -> XVal:
            return _missing(xavp_store(ctx, kind).get(XavpName(rname, None, None, None)), mode)

        return get

    def child_getter(mode: str) -> Fn:
        def get(self: Any, ctx: MsgContext, rname: str, cname: str) -> XVal:
            return _missing(xavp_store(ctx, kind).field_get(rname, cname), mode)

        return get

    def getd(self: Any, ctx: MsgContext, rname: str) -> XVal:
        items = xavp_store(ctx, kind).as_dicts(rname)
        return items or None  # type: ignore[return-value]

    def getd_p1(self: Any, ctx: MsgContext, rname: str, idx: int) -> XVal:
        items = xavp_store(ctx, kind).as_dicts(rname)
        pos = idx if idx >= 0 else len(items) + idx
        return items[pos] if 0 <= pos < len(items) else None  # type: ignore[return-value]

    def get_keys(self: Any, ctx: MsgContext, rname: str, idx: int) -> XVal:
        return xavp_store(ctx, kind).keys(rname, idx)  # type: ignore[return-value]

    def rm(self: Any, ctx: MsgContext, rname: str) -> int:
        return 1 if xavp_store(ctx, kind).rm_root(rname, False) else -1

    def rm_all(self: Any, ctx: MsgContext, rname: str) -> int:
        return 1 if xavp_store(ctx, kind).rm_root(rname, True) else -1

    def is_null(self: Any, ctx: MsgContext, rname: str) -> int:
        return 1 if not xavp_store(ctx, kind).items(rname) else -1

    def child_seti(self: Any, ctx: MsgContext, rname: str, cname: str, ival: int) -> int:
        return 1 if xavp_store(ctx, kind).child_set(rname, cname, ival) else -1

    def child_sets(self: Any, ctx: MsgContext, rname: str, cname: str, sval: str) -> int:
        return 1 if xavp_store(ctx, kind).child_set(rname, cname, sval) else -1

    def child_rm(self: Any, ctx: MsgContext, rname: str, cname: str) -> int:
        return 1 if xavp_store(ctx, kind).child_rm(rname, cname) else -1

    def child_is_null(self: Any, ctx: MsgContext, rname: str, cname: str) -> int:
        return 1 if xavp_store(ctx, kind).field_get(rname, cname) is None else -1

    s, i, x = str, int, XVal
    ops: dict[str, tuple[Fn, dict[str, Any]]] = {
        "seti": (seti, {"rname": s, "ival": i, "return": int}),
        "sets": (sets, {"rname": s, "sval": s, "return": int}),
        "get": (getter("get"), {"rname": s, "return": x}),
        "gete": (getter("gete"), {"rname": s, "return": x}),
        "getw": (getter("getw"), {"rname": s, "return": x}),
        "rm": (rm, {"rname": s, "return": int}),
        "is_null": (is_null, {"rname": s, "return": int}),
        "child_seti": (child_seti, {"rname": s, "cname": s, "ival": i, "return": int}),
        "child_sets": (child_sets, {"rname": s, "cname": s, "sval": s, "return": int}),
        "child_rm": (child_rm, {"rname": s, "cname": s, "return": int}),
        "child_is_null": (child_is_null, {"rname": s, "cname": s, "return": int}),
        "child_get": (child_getter("get"), {"rname": s, "cname": s, "return": x}),
        "child_gete": (child_getter("gete"), {"rname": s, "cname": s, "return": x}),
        "child_getw": (child_getter("getw"), {"rname": s, "cname": s, "return": x}),
    }
    if kind != "xavu":
        ops["getd"] = (getd, {"rname": s, "return": x})
        ops["getd_p1"] = (getd_p1, {"rname": s, "idx": i, "return": x})
        ops["get_keys"] = (get_keys, {"rname": s, "idx": i, "return": x})
        ops["rm_all"] = (rm_all, {"rname": s, "return": int})
    return ops


def install(cls: type) -> None:
    """Add the xavp, xavu and xavi functions to a module class as @kemi methods."""
    for kind in ("xavp", "xavu", "xavi"):
        for op, (fn, ann) in _ops(kind).items():
            name = f"{kind}_{op}"
            fn.__name__ = name
            fn.__doc__ = f"{kind.upper()}: {op.replace('_', ' ')} (1 ok / -1 not found; getters null when missing)."
            fn.__annotations__ = {"ctx": MsgContext, **ann}
            setattr(cls, name, kemi(name=name)(fn))
