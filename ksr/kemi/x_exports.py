"""``KSR.x``: what the script engines themselves offer (Kamailio's app_lua and app_python
``KSR.x``), declared like every other KSR function so the engines, stubs and docs take it from
the registry."""

from __future__ import annotations

from ksr.core.context import MsgContext
from ksr.core.module import Module

from .registry import kemi


class XExports(Module):
    """KSR.x.* functions."""

    name = "core.x"
    kemi_name = "x"

    @kemi(ends_route=True)
    def exit(self, ctx: MsgContext) -> None:
        """End the current route now (a normal end, not an error)."""

    @kemi(ends_route=True)
    def drop(self, ctx: MsgContext) -> None:
        """KSR.set_drop() then exit: the message is not sent on."""
        if ctx is not None:
            ctx.drop = True

    @kemi(varargs=True)
    def modf(self, ctx: MsgContext, fname: str) -> int:
        """Kamailio runs a native cfg function here; ksr has none and returns -1."""
        return -1

    @kemi(engines=("lua",))
    def probe(self, ctx: MsgContext) -> None:
        """Does nothing (Lua engines call it at start-up)."""
