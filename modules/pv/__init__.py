"""pv (KSR.pvx): typed access to $var, $shv, $avp, xavps, the static branch and evalx.

The pseudo-variable engine itself is in the core (``ksr/core/pv*.py``); this module adds the
KSR.pvx functions and the ``$sbranch``/``$shvinc`` classes.
"""

from __future__ import annotations

import logging
from typing import Any

from ksr.core.context import Branch, MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.pv import pv
from ksr.core.pv_vars import avp_name, stack_get, xavp_store
from ksr.core.xavp import XavpName
from ksr.kemi.registry import XVal, kemi

from .xavp_ops import install

log = logging.getLogger("ksr.pv")


class PvParams(ModParams):
    shvset: list[str] = []  # "name=type:value", e.g. "maxcalls=i:10"
    varset: list[str] = []


def _explode(params: str, seps: str = ";") -> list[tuple[str, str]]:
    out = []
    text = params
    for s in seps[1:]:
        text = text.replace(s, seps[0])
    for p in text.split(seps[0]):
        p = p.strip()
        if p:
            k, _, v = p.partition("=")
            out.append((k.strip(), v.strip()))
    return out


class Pv(Module):
    name = "pv"
    kemi_name = "pvx"
    Params = PvParams

    def init(self) -> None:
        self.sbranch: dict[str, Any] = {}
        for spec, target in (
            (self.params.shvset, self.server.shared_vars),
            (self.params.varset, self.server.script_vars),
        ):
            for item in spec:
                name, _, tv = item.partition("=")
                t, _, v = tv.partition(":")
                target[name.strip()] = int(v) if t.strip() == "i" else v

    # -- $sbranch ----------------------------------------------------------------------------
    @pv("sbranch")
    def _sbranch_get(self, ctx: MsgContext, arg: str, idx: int | None) -> XVal:
        v = self.sbranch.get(arg.strip())
        return v if v is not None else None

    @pv("sbranch", sets=True)
    def _sbranch_set(self, ctx: MsgContext, arg: str, value: XVal) -> bool:
        key = arg.partition("\x00")[0].strip()
        if key not in ("uri", "dst_uri", "path", "q", "flags", "socket", "ruid", "ua", "instance"):
            return False
        if value is None:
            self.sbranch.pop(key, None)
        else:
            self.sbranch[key] = value
        return True

    @kemi()
    def sbranch_set_ruri(self, ctx: MsgContext) -> int:
        """Set R-URI (and $du) from the static branch."""
        uri = self.sbranch.get("uri")
        if not uri or not ctx.is_request:
            return -1
        ctx.ruri = str(uri)
        if self.sbranch.get("dst_uri"):
            ctx.dst_uri = str(self.sbranch["dst_uri"])
        return 1

    @kemi()
    def sbranch_append(self, ctx: MsgContext) -> int:
        """Append the static branch to the destination set."""
        sb = self.sbranch
        if not sb.get("uri") or not ctx.is_request:
            return -1
        q = int(sb["q"]) if str(sb.get("q", "")).lstrip("-").isdigit() else -1
        ctx.branches.append(
            Branch(
                str(sb["uri"]),
                sb.get("dst_uri"),
                q,
                sb.get("path"),
                int(sb.get("flags", 0) or 0),
                None,
                str(sb.get("ruid", "")),
                str(sb.get("instance", "")),
                str(sb.get("ua", "")),
            )
        )
        return 1

    @kemi()
    def sbranch_reset(self, ctx: MsgContext) -> int:
        """Clear the static branch."""
        self.sbranch.clear()
        return 1

    # -- $var / $shv ---------------------------------------------------------------------------------
    @kemi()
    def var_seti(self, ctx: MsgContext, name: str, ival: int) -> int:
        """$var(name) = ival."""
        self.server.script_vars[name] = ival
        return 1

    @kemi()
    def var_sets(self, ctx: MsgContext, name: str, sval: str) -> int:
        """$var(name) = sval."""
        self.server.script_vars[name] = sval
        return 1

    @kemi()
    def var_get(self, ctx: MsgContext, name: str) -> XVal:
        """Value of $var(name) (0 if never set)."""
        return self.server.script_vars.get(name, 0)

    @kemi()
    def shv_seti(self, ctx: MsgContext, name: str, ival: int) -> int:
        """$shv(name) = ival."""
        self.server.shared_vars[name] = ival
        return 1

    @kemi()
    def shv_sets(self, ctx: MsgContext, name: str, sval: str) -> int:
        """$shv(name) = sval."""
        self.server.shared_vars[name] = sval
        return 1

    @kemi()
    def shv_get(self, ctx: MsgContext, name: str) -> XVal:
        """Value of $shv(name) (0 if never set)."""
        return self.server.shared_vars.get(name, 0)

    @pv("shvinc")
    def _pv_shvinc(self, ctx: MsgContext, arg: str, idx: int | None) -> int:
        return self._shvinc(arg)

    def _shvinc(self, name: str) -> int:
        v = self.server.shared_vars.get(name, 0)
        n = (v if isinstance(v, int) else 0) + 1
        self.server.shared_vars[name] = n
        return n

    @kemi()
    def shvinc_get(self, ctx: MsgContext, name: str) -> XVal:
        """Increment the integer $shv(name) and return the new value."""
        return self._shvinc(name)

    # -- $avp ---------------------------------------------------------------------------------------
    @kemi()
    def avp_seti(self, ctx: MsgContext, name: str, ival: int) -> int:
        """Add an integer value to $avp(name)."""
        ctx.avps.setdefault(avp_name(name), []).append(ival)
        return 1

    @kemi()
    def avp_sets(self, ctx: MsgContext, name: str, sval: str) -> int:
        """Add a string value to $avp(name)."""
        ctx.avps.setdefault(avp_name(name), []).append(sval)
        return 1

    @kemi()
    def avp_get(self, ctx: MsgContext, name: str) -> XVal:
        """Newest value of $avp(name); None/nil if none."""
        return stack_get(ctx.avps.get(avp_name(name)), None)

    @kemi()
    def avp_gete(self, ctx: MsgContext, name: str) -> XVal:
        """avp_get, "" if none."""
        v = self.avp_get(ctx, name)
        return "" if v is None else v

    @kemi()
    def avp_getw(self, ctx: MsgContext, name: str) -> XVal:
        """avp_get, "<null>" if none."""
        v = self.avp_get(ctx, name)
        return "<null>" if v is None else v

    @kemi()
    def avp_rm(self, ctx: MsgContext, name: str) -> int:
        """Remove every value of $avp(name): 1 removed, -1 none."""
        return 1 if ctx.avps.pop(avp_name(name), None) else -1

    @kemi()
    def avp_is_null(self, ctx: MsgContext, name: str) -> int:
        """1 if $avp(name) has no value, -1 otherwise."""
        return -1 if ctx.avps.get(avp_name(name)) else 1

    # -- evalx -------------------------------------------------------------------------------------
    @kemi()
    def evalx(self, ctx: MsgContext, dst: str, fmt: str) -> int:
        """Expand the PVs in fmt and assign the text to the PV dst."""
        return 1 if self.server.pv.set(ctx, dst, self.server.pv.expand(ctx, fmt)) else -1

    # -- xavp helpers -------------------------------------------------------------------------------
    def _explode_into(
        self, ctx: MsgContext, kind: str, pairs: list[tuple[str, str]], xname: str
    ) -> int:
        if not pairs:
            return -1
        store = xavp_store(ctx, kind)
        if kind == "xavu":
            for k, v in pairs:
                store.child_set(xname, k, v)
            return 1
        first = True
        for k, v in pairs:
            # the first field creates a new root item; the rest go into it
            store.set(XavpName(xname, None if first else 0, k, None), v)
            first = False
        return 1

    @kemi()
    def xavp_params_explode(self, ctx: MsgContext, params: str, xname: str) -> int:
        """ "a=1;b=2" -> a new $xavp(xname) item with fields a and b."""
        return self._explode_into(ctx, "xavp", _explode(params), xname)

    @kemi()
    def xavp_xparams_explode(self, ctx: MsgContext, params: str, sep: str, xname: str) -> int:
        """xavp_params_explode with other separator characters."""
        return self._explode_into(ctx, "xavp", _explode(params, sep or ";"), xname)

    @kemi()
    def xavu_params_explode(self, ctx: MsgContext, params: str, xname: str) -> int:
        """ "a=1;b=2" -> $xavu(xname=>a), $xavu(xname=>b)."""
        return self._explode_into(ctx, "xavu", _explode(params), xname)

    def _implode(self, ctx: MsgContext, kind: str, rname: str, pvname: str, quote: bool) -> int:
        it = xavp_store(ctx, kind).item(rname, 0)
        if not it:
            return -1
        parts = []
        for k, vals in it.items():
            if not k:
                continue
            v = str(vals[0]) if vals else ""
            parts.append(f'{k}="{v}"' if quote else f"{k}={v}")
        return 1 if self.server.pv.set(ctx, pvname, ";".join(parts)) else -1

    @kemi()
    def xavp_params_implode(self, ctx: MsgContext, rname: str, pvname: str) -> int:
        """Fields of the first $xavp(rname) item -> "a=1;b=2" in the PV pvname."""
        return self._implode(ctx, "xavp", rname, pvname, False)

    @kemi()
    def xavp_params_implode_qval(self, ctx: MsgContext, rname: str, pvname: str) -> int:
        """xavp_params_implode with quoted values."""
        return self._implode(ctx, "xavp", rname, pvname, True)

    @kemi()
    def xavu_params_implode(self, ctx: MsgContext, rname: str, pvname: str) -> int:
        """Fields of $xavu(rname) -> "a=1;b=2" in the PV pvname."""
        return self._implode(ctx, "xavu", rname, pvname, False)

    @kemi()
    def xavp_slist_explode(
        self, ctx: MsgContext, slist: str, sep: str, mode: str, xname: str
    ) -> int:
        """Split slist on the characters of sep into $xavp(xname=>v) items (mode "t" trims)."""
        if not sep:
            return -1
        text = slist
        for c in sep[1:]:
            text = text.replace(c, sep[0])
        items = [x.strip() if "t" in mode else x for x in text.split(sep[0])]
        store = xavp_store(ctx)
        for x in reversed(items):
            store.set(XavpName(xname, None, "v", None), x)
        return 1

    @kemi()
    def xavp_copy(self, ctx: MsgContext, src: str, src_idx: int, dst: str) -> int:
        """Copy item src_idx of $xavp(src) as a new (newest) item of $xavp(dst)."""
        store = xavp_store(ctx)
        it = store.item(src, src_idx)
        if it is None:
            return -1
        store.data.setdefault(dst, []).insert(0, {k: list(v) for k, v in it.items()})
        return 1

    @kemi()
    def xavp_copy_dst(self, ctx: MsgContext, src: str, src_idx: int, dst: str, dst_idx: int) -> int:
        """Copy item src_idx of $xavp(src) over item dst_idx of $xavp(dst)."""
        store = xavp_store(ctx)
        it = store.item(src, src_idx)
        items = store.data.get(dst)
        if it is None or not items:
            return -1
        pos = dst_idx if dst_idx >= 0 else len(items) + dst_idx
        if not 0 <= pos < len(items):
            return -1
        items[pos] = {k: list(v) for k, v in it.items()}
        return 1

    @kemi()
    def xavp_lshift(self, ctx: MsgContext, rname: str, idx: int) -> int:
        """Rotate the items of $xavp(rname) left by idx positions."""
        items = xavp_store(ctx).data.get(rname)
        if not items:
            return -1
        k = idx % len(items)
        items[:] = items[k:] + items[:k]
        return 1

    @kemi()
    def xavp_push_dst(self, ctx: MsgContext, rname: str) -> int:
        """Append a branch for every $xavp(rname) item with a "uri" field (dsturi as $du)."""
        n = 0
        for it in reversed(xavp_store(ctx).items(rname)):
            uris = it.get("uri")
            if uris:
                dus = it.get("dsturi") or it.get("duri")
                ctx.branches.append(Branch(str(uris[0]), str(dus[0]) if dus else None))
                n += 1
        return 1 if n else -1

    @kemi()
    def pv_var_to_xavp(self, ctx: MsgContext, varname: str, xname: str) -> int:
        """Copy $var(varname) ("*" = every $var) into a new $xavp(xname) item."""
        vars_ = self.server.script_vars
        names = list(vars_) if varname == "*" else [varname]
        pairs = [(n, vars_.get(n, 0)) for n in names]
        if not pairs:
            return -1
        item = {n: [v] for n, v in pairs}
        xavp_store(ctx).data.setdefault(xname, []).insert(0, item)
        return 1

    @kemi()
    def pv_xavp_to_var(self, ctx: MsgContext, xname: str) -> int:
        """Copy the fields of the first $xavp(xname) item into $var(field)."""
        it = xavp_store(ctx).item(xname, 0)
        if not it:
            return -1
        for k, vals in it.items():
            if k and vals:
                self.server.script_vars[k] = vals[0]
        return 1

    def _print(self, ctx: MsgContext, kind: str) -> int:
        for root, items in xavp_store(ctx, kind).data.items():
            log.info("%s %s: %s", kind, root, items)
        return 1

    @kemi()
    def pv_xavp_print(self, ctx: MsgContext) -> int:
        """Log every xavp of the message."""
        return self._print(ctx, "xavp")

    @kemi()
    def pv_xavu_print(self, ctx: MsgContext) -> int:
        """Log every xavu."""
        return self._print(ctx, "xavu")

    @kemi()
    def pv_xavi_print(self, ctx: MsgContext) -> int:
        """Log every xavi."""
        return self._print(ctx, "xavi")


install(Pv)

MODULE = Pv
