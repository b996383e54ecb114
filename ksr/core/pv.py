"""Pseudo-variables: ``$ru``, ``$hdr(Name)``, ``$(avp(x)[1])``, ``$var(n)``...

A spec string is compiled once (cached) into a handler, a name argument and an index. Modules
add their own classes (``$sht``, ``$T_reply_code``, ``$dlg_var``...) with ``register``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ksr.sip.headers import header_key, parse_name_addr
from ksr.sip.message import Header, Message, Request, Response
from ksr.sip.uri import Uri, parse_uri

if TYPE_CHECKING:
    from .context import MsgContext

Value = int | str | None
Getter = Callable[["MsgContext", str, "int | None"], Value]
Setter = Callable[["MsgContext", str, Value], bool]


class PvError(Exception):
    pass


@dataclass(slots=True)
class PvDef:
    get: Getter
    set: Setter | None = None


@dataclass(slots=True)
class CompiledPv:
    pv: PvDef
    arg: str
    idx: int | None  # None = first/newest, -1 last, ... ; "*" is encoded as idx = ALL
    name: str


ALL = -(10**9)
_SIMPLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_.]*)$")
_WITH_ARG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$", re.S)
_INDEXED = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\((.*)\)\[(-?\d+|\*)\]\)$", re.S)
_EMBEDDED = re.compile(r"\$(?:\([^)]*\)\)|\([^()]*(?:\([^()]*\))?[^()]*\)|[A-Za-z_][A-Za-z0-9_]*(?:\([^()]*\))?)")


class PvRegistry:
    def __init__(self) -> None:
        self.defs: dict[str, PvDef] = {}
        self._cache: dict[str, CompiledPv | None] = {}
        _register_core(self)

    def register(self, name: str, get: Getter, set: Setter | None = None) -> None:
        self.defs[name] = PvDef(get, set)
        self._cache.clear()

    def compile(self, spec: str) -> CompiledPv | None:
        try:
            return self._cache[spec]
        except KeyError:
            pass
        c = self._compile(spec.strip())
        if len(self._cache) < 10000:
            self._cache[spec] = c
        return c

    def _compile(self, spec: str) -> CompiledPv | None:
        m = _INDEXED.match(spec)
        if m:
            name, arg, idx = m.group(1), m.group(2), m.group(3)
            pv = self.defs.get(name)
            return CompiledPv(pv, arg, ALL if idx == "*" else int(idx), name) if pv else None
        m = _WITH_ARG.match(spec)
        if m:
            pv = self.defs.get(m.group(1))
            return CompiledPv(pv, m.group(2), None, m.group(1)) if pv else None
        m = _SIMPLE.match(spec)
        if m:
            pv = self.defs.get(m.group(1))
            return CompiledPv(pv, "", None, m.group(1)) if pv else None
        return None

    def get(self, ctx: MsgContext, spec: str) -> Value:
        c = self.compile(spec)
        if c is None:
            return None
        try:
            return c.pv.get(ctx, c.arg, c.idx)
        except Exception:
            return None

    def set(self, ctx: MsgContext, spec: str, value: Value) -> bool:
        c = self.compile(spec)
        if c is None or c.pv.set is None:
            return False
        try:
            return c.pv.set(ctx, c.arg, value)
        except Exception:
            return False

    def is_valid(self, spec: str) -> bool:
        return self.compile(spec) is not None

    def expand(self, ctx: MsgContext, text: str) -> str:
        """Replace every PV in a format string with its value ("<null>" for null)."""
        if "$" not in text:
            return text

        def sub(m: re.Match[str]) -> str:
            c = self.compile(m.group(0))
            if c is None:
                return m.group(0)
            v = self.get(ctx, m.group(0))
            return "<null>" if v is None else str(v)

        return _EMBEDDED.sub(sub, text)

    def expand_arg(self, ctx: MsgContext, arg: str) -> str:
        """Expand PVs inside a class argument (``$sht(ipban=>$si)``)."""
        return self.expand(ctx, arg) if "$" in arg else arg


# ------------------------------------------------------------------------------------------
# core pseudo-variables


def _uri(text: str | None) -> Uri | None:
    if not text:
        return None
    try:
        return parse_uri(text)
    except Exception:
        return None


def _ro(fn: Callable[[MsgContext], Value]) -> Getter:
    return lambda ctx, arg, idx: fn(ctx)


def _ruri_part(part: str) -> Getter:
    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        u = _uri(ctx.ruri)
        return _part(u, part)

    return get


def _ouri_part(part: str) -> Getter:
    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        m = ctx.msg
        return _part(_uri(m.uri), part) if isinstance(m, Request) else None

    return get


def _part(u: Uri | None, part: str) -> Value:
    if u is None:
        return None
    if part == "uri":
        return str(u)
    if part == "user":
        return u.user
    if part == "host":
        return u.host or None
    if part == "port":
        if u.port is not None:
            return str(u.port)
        return "5061" if u.scheme == "sips" else "5060"
    if part == "proto":
        return u.transport or "udp"
    if part == "scheme":
        return u.scheme
    return None


def _set_ruri_part(part: str) -> Setter:
    def set_(ctx: MsgContext, arg: str, value: Value) -> bool:
        if value is None:
            return False
        if part == "uri":
            ctx.ruri = str(value)
            return True
        u = _uri(ctx.ruri)
        if u is None:
            return False
        if part == "user":
            u.user = str(value) or None
        elif part == "host":
            u.host = str(value)
        elif part == "port":
            u.port = int(value) if str(value) else None
        ctx.ruri = str(u)
        return True

    return set_


def _dst_part(part: str) -> Getter:
    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        if part == "uri":
            return ctx.dst_uri
        return _part(_uri(ctx.dst_uri), part)

    return get


def _set_du(ctx: MsgContext, arg: str, value: Value) -> bool:
    ctx.dst_uri = str(value) if value not in (None, "") else None
    return True


def _addr_part(hname: str, part: str) -> Getter:
    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        v = ctx.msg.get(hname)
        if v is None:
            return None
        try:
            na = parse_name_addr(v)
        except Exception:
            return None
        if part == "tag":
            return na.tag
        if part == "display":
            return na.display.strip('"') if na.display else None
        if part == "uri":
            return na.uri_text
        u = _uri(na.uri_text)
        return _part(u, part)

    return get


def _set_addr_part(hname: str, part: str) -> Setter:
    """Writes to From/To parts are lumps: reading back gives the received value."""

    def set_(ctx: MsgContext, arg: str, value: Value) -> bool:
        if value is None:
            return False
        new = str(value)

        def lump(m: Message, original: frozenset[int]) -> None:
            for i, h in enumerate(m.headers):
                if h.key != hname:
                    continue
                na = parse_name_addr(h.value)
                if part == "uri":
                    na.uri_text = new
                elif part == "display":
                    na.display = f'"{new}"' if new else None
                else:
                    u = parse_uri(na.uri_text)
                    if part == "user":
                        u.user = new or None
                    elif part == "host":
                        u.host = new
                    na.uri_text = str(u)
                m.headers[i] = Header(h.name, str(na))
                return

        ctx.add_lump(lump)
        return True

    return set_


def _hdr(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    values = ctx.msg.get_all(arg)
    if not values:
        return None
    if idx is None:
        return values[0]
    if idx == ALL:
        return ",".join(values)
    try:
        return values[idx]
    except IndexError:
        return None


def _stack_get(stack: list[int | str] | None, idx: int | None) -> Value:
    if not stack:
        return None
    if idx is None:
        return stack[-1]
    if idx == ALL:
        return ",".join(str(x) for x in reversed(stack))
    # index 0 = newest, as Kamailio
    try:
        return stack[-1 - idx] if idx >= 0 else stack[-idx - 1 - len(stack) + len(stack)]
    except IndexError:
        return None


def _avp_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    return _stack_get(ctx.avps.get(arg), idx)


def _avp_set(ctx: MsgContext, arg: str, value: Value) -> bool:
    if value is None:
        stack = ctx.avps.get(arg)
        if stack:
            stack.pop()
        return True
    ctx.avps.setdefault(arg, []).append(value)
    return True


def _xavp_split(arg: str) -> tuple[str, str | None]:
    root, sep, field = arg.partition("=>")
    return root.strip(), field.strip() if sep else None


def _xavp_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    root, fld = _xavp_split(arg)
    items = ctx.xavps.get(root)
    if not items:
        return None
    item = items[0] if idx is None or idx == ALL else (items[idx] if -len(items) <= idx < len(items) else None)
    if item is None:
        return None
    if fld is None:
        return f"<<xavp:{root}>>"
    vals = item.get(fld)
    return vals[0] if vals else None


def _xavp_set(ctx: MsgContext, arg: str, value: Value) -> bool:
    root, fld = _xavp_split(arg)
    if value is None:
        if fld is None:
            ctx.xavps.pop(root, None)
        elif ctx.xavps.get(root):
            ctx.xavps[root][0].pop(fld, None)
        return True
    if fld is None:
        return False
    items = ctx.xavps.setdefault(root, [])
    if not items or fld in items[0]:
        items.insert(0, {})  # a new item when the field is already there (Kamailio: $xavp(r=>f) on new root)
    items[0].setdefault(fld, []).insert(0, value)
    return True


def _var_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    return ctx.server.script_vars.get(arg, 0)


def _var_set(ctx: MsgContext, arg: str, value: Value) -> bool:
    ctx.server.script_vars[arg] = 0 if value is None else value
    return True


def _vn_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    return ctx.server.script_vars_null.get(arg)


def _vn_set(ctx: MsgContext, arg: str, value: Value) -> bool:
    ctx.server.script_vars_null[arg] = value
    return True


def _shv_get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    return ctx.server.shared_vars.get(arg, 0)


def _shv_set(ctx: MsgContext, arg: str, value: Value) -> bool:
    ctx.server.shared_vars[arg] = 0 if value is None else value
    return True


def _flags_set(attr: str) -> Setter:
    def set_(ctx: MsgContext, arg: str, value: Value) -> bool:
        setattr(ctx, attr, int(value or 0))
        return True

    return set_


def _status(ctx: MsgContext) -> Value:
    return ctx.msg.status if isinstance(ctx.msg, Response) else None


def _reason(ctx: MsgContext) -> Value:
    return ctx.msg.reason if isinstance(ctx.msg, Response) else None


def _cseq_num(ctx: MsgContext) -> Value:
    v = ctx.msg.get("cseq")
    return v.split()[0] if v and v.split() else None


def _contact(ctx: MsgContext) -> Value:
    return ctx.msg.get("contact")


def _contact_uri(ctx: MsgContext) -> Value:
    v = ctx.msg.get("contact")
    if not v or v.strip() == "*":
        return None
    try:
        from ksr.sip.headers import split_commas

        return parse_name_addr(split_commas(v)[0]).uri_text
    except Exception:
        return None


def _body(ctx: MsgContext) -> Value:
    b = ctx.msg.body
    return b.decode("utf-8", "surrogateescape") if b else None


def _auth(part: str) -> Getter:
    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        from ksr.sip.auth_header import parse_credentials

        for name in ("authorization", "proxy-authorization"):
            v = ctx.msg.get(name)
            if v:
                try:
                    creds = parse_credentials(v)
                except Exception:
                    return None
                user = creds.params.get("username")
                if part == "user":
                    return user.partition("@")[0] if user else None
                if part == "full":
                    return user
                if part == "realm":
                    return creds.params.get("realm")
                if part == "domain":
                    return user.partition("@")[2] or creds.params.get("realm") if user else None
        return None

    return get


def _register_core(r: PvRegistry) -> None:
    for name, part in (("ru", "uri"), ("rU", "user"), ("rd", "host"), ("rp", "port")):
        r.register(name, _ruri_part(part), _set_ruri_part(part))
    r.register("rP", _ruri_part("proto"))
    r.register("rz", _ruri_part("scheme"))
    for name, part in (("ou", "uri"), ("oU", "user"), ("od", "host"), ("op", "port"), ("oP", "proto")):
        r.register(name, _ouri_part(part))
    r.register("du", _dst_part("uri"), _set_du)
    r.register("dd", _dst_part("host"))
    r.register("dp", _dst_part("port"))
    r.register("dP", _dst_part("proto"))
    for hname, prefix in (("from", "f"), ("to", "t")):
        r.register(prefix + "u", _addr_part(hname, "uri"), _set_addr_part(hname, "uri"))
        r.register(prefix + "U", _addr_part(hname, "user"), _set_addr_part(hname, "user"))
        r.register(prefix + "d", _addr_part(hname, "host"), _set_addr_part(hname, "host"))
        r.register(prefix + "n", _addr_part(hname, "display"), _set_addr_part(hname, "display"))
        r.register(prefix + "t", _addr_part(hname, "tag"))
    r.register("ci", _ro(lambda c: c.msg.get("call-id")))
    r.register("cs", _ro(_cseq_num))
    r.register("csb", _ro(lambda c: c.msg.get("cseq")))
    r.register("rm", _ro(lambda c: c.method or None))
    r.register("rs", _ro(_status))
    r.register("rr", _ro(_reason))
    r.register("si", _ro(lambda c: c.src_ip))
    r.register("sp", _ro(lambda c: c.src_port))
    r.register("su", _ro(lambda c: f"sip:{c.src_ip}:{c.src_port}" + ("" if c.proto == "udp" else f";transport={c.proto}")))
    r.register("Ri", _ro(lambda c: c.socket.ip))
    r.register("Rp", _ro(lambda c: c.socket.port))
    r.register("Ru", _ro(lambda c: f"sip:{c.socket.ip}:{c.socket.port}" + ("" if c.socket.proto == "udp" else f";transport={c.socket.proto}")))
    r.register("RAi", _ro(lambda c: c.socket.adv_ip))
    r.register("RAp", _ro(lambda c: c.socket.adv_port))
    r.register("pr", _ro(lambda c: c.proto))
    r.register("proto", _ro(lambda c: c.proto))
    r.register("ua", _ro(lambda c: c.msg.get("user-agent")))
    r.register("ct", _ro(_contact))
    r.register("ctu", _ro(_contact_uri))
    r.register("cts", _ro(lambda c: 1 if (c.msg.get("contact") or "").strip() == "*" else 0))
    r.register("cT", _ro(lambda c: c.msg.get("content-type")))
    r.register("cl", _ro(lambda c: len(c.msg.body)))
    r.register("rb", _ro(_body))
    r.register("ml", _ro(lambda c: len(c.msg.to_bytes())))
    r.register("mb", _ro(lambda c: c.msg.to_bytes().decode("utf-8", "surrogateescape")))
    r.register("mbu", _ro(lambda c: c.apply_lumps().to_bytes().decode("utf-8", "surrogateescape")))
    r.register("mt", _ro(lambda c: 1 if c.msg.is_request else 2))
    r.register("mf", _ro(lambda c: c.flags), _flags_set("flags"))
    r.register("bf", _ro(lambda c: c.bflags), _flags_set("bflags"))
    r.register("sf", _ro(lambda c: c.sflags), _flags_set("sflags"))
    r.register("ds", _ro(lambda c: ",".join([c.ruri or ""] + [b.uri for b in c.branches])))
    r.register("br", _ro(lambda c: c.branches[0].uri if c.branches else None))
    r.register("bR", _ro(lambda c: ",".join(b.uri for b in c.branches) or None))
    r.register("Ts", _ro(lambda c: int(c.timestamp)))
    r.register("TS", _ro(lambda c: int(__import__("time").time())))
    r.register("hdr", _hdr)
    r.register("hdrc", lambda c, arg, idx: c.msg.count(arg))
    r.register("avp", _avp_get, _avp_set)
    r.register("xavp", _xavp_get, _xavp_set)
    r.register("var", _var_get, _var_set)
    r.register("vn", _vn_get, _vn_set)
    r.register("shv", _shv_get, _shv_set)
    r.register("au", _auth("user"))
    r.register("aU", _auth("full"))
    r.register("ar", _auth("realm"))
    r.register("ad", _auth("domain"))
    r.register("conid", _ro(lambda c: c.conn_id or None))
    r.register("fs", _ro(lambda c: str(c.send_socket) if c.send_socket else None))
    r.register("null", _ro(lambda c: None))
    r.register("pp", _ro(lambda c: __import__("os").getpid()))


__all__ = ["PvRegistry", "Value", "header_key"]
