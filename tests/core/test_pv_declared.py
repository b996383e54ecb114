"""Module pseudo-variables are declared on their methods (@pv), as KSR functions are with
@kemi: the loader registers them."""

from __future__ import annotations

import pytest

from ksr.core.context import MsgContext
from ksr.core.pv import PvRegistry, Value, pv
from tests.kemi.scriptkit import context, server_with


class Counter:
    def __init__(self) -> None:
        self.n = 0

    @pv("cnt")
    def get(self, ctx: MsgContext, arg: str, idx: int | None) -> Value:
        return self.n + (int(arg) if arg else 0)

    @pv("cnt", sets=True)
    def put(self, ctx: MsgContext, arg: str, value: Value) -> bool:
        self.n = int(value or 0)
        return True


def test_declared_getter_and_setter() -> None:
    s = server_with([])
    ctx = context(s)
    reg = PvRegistry()
    reg.add_object(Counter())
    assert reg.set(ctx, "$cnt(0)", 5)
    assert reg.get(ctx, "$cnt(2)") == 7


def test_a_setter_needs_a_getter() -> None:
    class Half:
        @pv("half", sets=True)
        def put(self, ctx: MsgContext, arg: str, value: Value) -> bool:
            return True

    with pytest.raises(ValueError, match="half"):
        PvRegistry().add_object(Half())


def test_loaded_modules_declare_theirs() -> None:
    s = server_with(["htable", "xhttp", "jsonrpcs"], {"htable": {"htable": ["t=>size=2;"]}})
    ctx = context(s)
    assert s.pv.set(ctx, "$sht(t=>k)", 3)
    assert s.pv.get(ctx, "$shtinc(t=>k)") == 4
    assert s.pv.get(ctx, "$hu") is None  # not an HTTP request
