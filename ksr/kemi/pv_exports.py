"""``KSR.pv``: reading and writing pseudo-variables (Kamailio's core pv exports)."""

from __future__ import annotations

from ksr.core.context import MsgContext
from ksr.core.module import Module
from ksr.kemi.registry import XVal, kemi


class PvExports(Module):
    """KSR.pv: read and write pseudo-variables."""

    name = "core.pv"
    kemi_name = "pv"

    @kemi(via=lambda pv: pv.server.pv.get)
    def get(self, ctx: MsgContext, spec: str) -> XVal:
        """Value of a PV: int for integer PVs, else string; None/nil for $null."""
        return self.server.pv.get(ctx, spec)

    @kemi()
    def gete(self, ctx: MsgContext, spec: str) -> XVal:
        """Like get, but "" instead of null."""
        v = self.server.pv.get(ctx, spec)
        return "" if v is None else v

    @kemi()
    def getw(self, ctx: MsgContext, spec: str) -> XVal:
        """Like get, but "<null>" instead of null."""
        v = self.server.pv.get(ctx, spec)
        return "<null>" if v is None else v

    @kemi()
    def geti(self, ctx: MsgContext, spec: str) -> int:
        """Value as int (0 if null or not a number)."""
        v = self.server.pv.get(ctx, spec)
        try:
            return int(v) if v is not None else 0
        except ValueError:
            return 0

    @kemi()
    def getl(self, ctx: MsgContext, spec: str) -> XVal:
        """Value as long integer; 0 if null."""
        return self.geti(ctx, spec)

    @kemi()
    def getvn(self, ctx: MsgContext, spec: str, default: int) -> XVal:
        """Value, or the default int if null."""
        v = self.server.pv.get(ctx, spec)
        return default if v is None else v

    @kemi()
    def getvs(self, ctx: MsgContext, spec: str, default: str) -> XVal:
        """Value, or the default string if null."""
        v = self.server.pv.get(ctx, spec)
        return default if v is None else v

    @kemi()
    def seti(self, ctx: MsgContext, spec: str, value: int) -> bool:
        """Assign an integer to a writable PV."""
        return self.server.pv.set(ctx, spec, value)

    @kemi()
    def setl(self, ctx: MsgContext, spec: str, value: int) -> bool:
        """Assign a long integer to a writable PV."""
        return self.server.pv.set(ctx, spec, value)

    @kemi()
    def sets(self, ctx: MsgContext, spec: str, value: str) -> bool:
        """Assign a string to a writable PV."""
        return self.server.pv.set(ctx, spec, value)

    @kemi()
    def unset(self, ctx: MsgContext, spec: str) -> bool:
        """Assign $null (delete an AVP, reset $du; $var becomes 0)."""
        return self.server.pv.set(ctx, spec, None)

    @kemi()
    def is_null(self, ctx: MsgContext, spec: str) -> bool:
        """True if the PV is null (also for invalid names)."""
        return self.server.pv.get(ctx, spec) is None
