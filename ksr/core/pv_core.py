"""The core pseudo-variables (Kamailio's pv module classes the core can answer).

Types follow Kamailio's KEMI: ``$rp``/``$cs`` are strings, ``$sp``/``$Rp``/``$ml``/``$cl``/``$mt``
ints. Writes to From/To parts are lumps (reading back gives the received value); R-URI and
``$du`` writes are visible at once.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ksr.sip.headers import parse_name_addr, split_commas
from ksr.sip.hostport import split_proto
from ksr.sip.message import Request, Response
from ksr.sip.uri import Uri, parse_uri

from .lumps import rewrite_headers
from .pv import ALL, Getter, Setter, Value, split_index
from .pv_vars import register_vars

if TYPE_CHECKING:
    from .context import MsgContext, SocketInfo
    from .pv import PvRegistry

PROTO_IDS = {"udp": 1, "tcp": 2, "tls": 3, "sctp": 4, "ws": 5, "wss": 6}


def _uri(text: str | None) -> Uri | None:
    if not text:
        return None
    try:
        return parse_uri(text.strip())
    except Exception:
        return None


def _ro(fn: Callable[[MsgContext], Value]) -> Getter:
    return lambda ctx, arg, idx: fn(ctx)


def uri_part(u: Uri | None, part: str) -> Value:
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


def _ruri_part(part: str) -> Getter:
    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        if part == "uri":
            return ctx.ruri
        return uri_part(_uri(ctx.ruri), part)

    return get


def _ouri_part(part: str) -> Getter:
    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        m = ctx.msg
        if not isinstance(m, Request):
            return None
        return m.uri if part == "uri" else uri_part(_uri(m.uri), part)

    return get


def _set_ruri_part(part: str) -> Setter:
    def set_(ctx: MsgContext, arg: str, value: Value) -> bool:
        if not ctx.is_request:
            return False
        if part == "uri":
            if value is None or _uri(str(value)) is None:
                return False
            ctx.ruri = str(value)
            return True
        u = _uri(ctx.ruri)
        if u is None:
            return False
        if part == "user":
            u.user = str(value) if value not in (None, "") else None
        elif part == "host":
            if not value:
                return False
            u.host = str(value)
        elif part == "port":
            u.port = int(value) if value not in (None, "") else None
        ctx.ruri = str(u)
        return True

    return set_


def _dst_part(part: str) -> Getter:
    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        if part == "uri":
            return ctx.dst_uri
        return uri_part(_uri(ctx.dst_uri), part)

    return get


def _set_du(ctx: MsgContext, arg: str, value: Value) -> bool:
    ctx.dst_uri = str(value) if value not in (None, "") else None
    return True


def _addr_part(hname: str, part: str) -> Getter:
    # From and To: the message's own cached parse (tm, rr and the dialog read it too), when
    # the value is one address, i.e. what split_commas would hand back whole
    cached = {"from": "from_", "to": "to"}.get(hname)

    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        msg = ctx.msg
        v = msg.get(hname)
        if v is None:
            return None
        try:
            if cached is not None and "," not in v:
                na = getattr(msg, cached)
            else:
                na = parse_name_addr(split_commas(v)[0])
        except Exception:
            return None
        if part == "tag":
            return na.tag
        if part == "display":
            return na.display.strip('"') if na.display else None
        if part == "uri":
            return na.uri_text
        return uri_part(_uri(na.uri_text), part)

    return get


def _set_addr_part(hname: str, part: str) -> Setter:
    """Writes to From/To parts are lumps: reading back gives the received value."""

    def set_(ctx: MsgContext, arg: str, value: Value) -> bool:
        if value is None and part not in ("display", "user"):
            return False
        new = "" if value is None else str(value)
        if not ctx.msg.has(hname):
            return False

        def change(value: str) -> str:
            na = parse_name_addr(value)
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
            return str(na)

        ctx.add_lump(rewrite_headers(hname, change, first_only=True))
        return True

    return set_


def _hdr(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    return _pick(ctx.msg.get_all(arg.strip()), idx)


def _hfl(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    """Like $hdr, but list headers (Via, Route, Contact...) count each comma-separated value."""
    return _pick(ctx.msg.get_values(arg.strip()), idx)


def _pick(values: list[str], idx: int | None) -> Value:
    """The value at an index of $hdr/$hfl: the first by default, all joined with [*]."""
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


def _contact_uri(ctx: MsgContext) -> Value:
    v = ctx.msg.get("contact")
    if not v or v.strip() == "*":
        return None
    try:
        return parse_name_addr(split_commas(v)[0]).uri_text
    except Exception:
        return None


def _body(ctx: MsgContext) -> Value:
    b = ctx.msg.body
    return b.decode("utf-8", "surrogateescape") if b else None


def _content_length(ctx: MsgContext) -> Value:
    v = ctx.msg.get("content-length")
    if v is not None and v.strip().isdigit():
        return int(v.strip())
    return len(ctx.msg.body)


def _auth(part: str) -> Getter:
    def get(ctx: MsgContext, arg: str, idx: int | None) -> Value:
        from ksr.sip.auth_header import parse_credentials

        for name in ("authorization", "proxy-authorization"):
            v = ctx.msg.get(name)
            if not v:
                continue
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
                return (user.partition("@")[2] or creds.params.get("realm")) if user else None
        return None

    return get


def _set_fs(ctx: MsgContext, arg: str, value: Value) -> bool:
    if value in (None, ""):
        ctx.send_socket = None
        return True
    sock = find_socket(ctx, str(value))
    if sock is None:
        return False
    ctx.send_socket = sock
    return True


def find_socket(ctx: MsgContext, spec: str) -> SocketInfo | None:
    """A listening socket by "proto:ip:port" (proto and port optional)."""
    proto, s = split_proto(spec.strip())
    host, port = s, None
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port = int(rest[1:]) if rest[1:].isdigit() else None
    elif s.count(":") == 1:
        host, _, p = s.partition(":")
        port = int(p) if p.isdigit() else None
    for sock in ctx.server.listeners:
        if (
            sock.ip == host
            and (port is None or port == sock.port)
            and (proto is None or proto == sock.proto)
        ):
            return sock
    return None


def _tv(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    now = time.time()
    if arg == "s":
        return int(now)
    if arg == "u":
        return int((now % 1) * 1_000_000)
    if arg == "sn":
        return int(now)
    if arg == "un":
        return int((now % 1) * 1_000_000)
    return f"{int(now)}.{int((now % 1) * 1_000_000):06d}"


def _env(ctx: MsgContext, arg: str, idx: int | None) -> Value:
    return os.environ.get(arg)


def _branch_set(ctx: MsgContext, arg: str, value: Value) -> bool:
    from .context import Branch

    if value is None:
        ctx.branches.clear()
        return True
    if ctx.branches:
        ctx.branches[0].uri = str(value)
    else:
        ctx.branches.append(Branch(str(value)))
    return True


def register_core(r: PvRegistry) -> None:
    for name, part in (("ru", "uri"), ("rU", "user"), ("rd", "host"), ("rp", "port")):
        r.register(name, _ruri_part(part), _set_ruri_part(part))
    r.register("rP", _ruri_part("proto"))
    r.register("rz", _ruri_part("scheme"))
    for name, part in (
        ("ou", "uri"),
        ("oU", "user"),
        ("od", "host"),
        ("op", "port"),
        ("oP", "proto"),
    ):
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
    for name, hname in (
        ("ai", "p-asserted-identity"),
        ("pu", "p-preferred-identity"),
        ("re", "remote-party-id"),
        ("di", "diversion"),
    ):
        r.register(name, _addr_part(hname, "uri"))
    r.register("pU", _addr_part("p-preferred-identity", "user"))
    r.register("pd", _addr_part("p-preferred-identity", "host"))
    r.register("pn", _addr_part("p-preferred-identity", "display"))
    r.register("ci", _ro(lambda c: c.msg.get("call-id")))
    r.register("cs", _ro(_cseq_num))
    r.register("csb", _ro(lambda c: c.msg.get("cseq")))
    r.register("rm", _ro(lambda c: c.method or None))
    r.register("rs", _ro(_status))
    r.register("rr", _ro(_reason))
    r.register("rv", _ro(lambda c: c.msg.version))
    r.register("si", _ro(lambda c: c.src_ip))
    r.register("sp", _ro(lambda c: c.src_port))
    r.register(
        "su",
        _ro(
            lambda c: (
                f"sip:{c.src_ip}:{c.src_port}"
                + ("" if c.proto == "udp" else f";transport={c.proto}")
            )
        ),
    )
    r.register("sut", _ro(lambda c: f"sip:{c.src_ip}:{c.src_port};transport={c.proto}"))
    r.register("Ri", _ro(lambda c: c.socket.ip))
    r.register("Rp", _ro(lambda c: c.socket.port))
    r.register("Rn", _ro(lambda c: c.socket.name or None))
    r.register(
        "Ru",
        _ro(
            lambda c: (
                f"sip:{c.socket.ip}:{c.socket.port}"
                + ("" if c.socket.proto == "udp" else f";transport={c.socket.proto}")
            )
        ),
    )
    r.register(
        "Rut", _ro(lambda c: f"sip:{c.socket.ip}:{c.socket.port};transport={c.socket.proto}")
    )
    r.register("RAi", _ro(lambda c: c.socket.adv_ip))
    r.register("RAp", _ro(lambda c: c.socket.adv_port))
    r.register("pr", _ro(lambda c: c.proto))
    r.register("proto", _ro(lambda c: c.proto))
    r.register("prid", _ro(lambda c: PROTO_IDS.get(c.proto, 0)))
    r.register("ua", _ro(lambda c: c.msg.get("user-agent")))
    r.register("ct", _ro(lambda c: c.msg.get("contact")))
    r.register("ctu", _ro(_contact_uri))
    r.register("cts", _ro(lambda c: 1 if (c.msg.get("contact") or "").strip() == "*" else 0))
    r.register("cT", _ro(lambda c: c.msg.get("content-type")))
    r.register("cl", _ro(_content_length))
    r.register("rb", _ro(_body))
    r.register("ml", _ro(lambda c: len(c.msg.to_bytes())))
    r.register("mb", _ro(lambda c: c.msg.to_bytes().decode("utf-8", "surrogateescape")))
    r.register("mbu", _ro(lambda c: c.apply_lumps().to_bytes().decode("utf-8", "surrogateescape")))
    r.register("mt", _ro(lambda c: 1 if c.msg.is_request else 2))
    r.register("mf", _ro(lambda c: c.flags), _flags_set("flags"))
    r.register("bf", _ro(lambda c: c.bflags), _flags_set("bflags"))
    r.register("sf", _ro(lambda c: c.sflags), _flags_set("sflags"))
    r.register("ds", _ro(lambda c: ",".join([c.ruri or ""] + [b.uri for b in c.branches])))
    r.register("br", _ro(lambda c: c.branches[0].uri if c.branches else None), _branch_set)
    r.register("bR", _ro(lambda c: ",".join(b.uri for b in c.branches) or None))
    r.register("Ts", _ro(lambda c: int(c.timestamp)))
    r.register("TS", _ro(lambda c: int(time.time())))
    r.register("Tf", _ro(lambda c: time.ctime(c.timestamp)))
    r.register("TF", _ro(lambda c: time.ctime()))
    r.register("TV", _tv)
    r.register("hdr", _hdr)
    r.register("hfl", _hfl)
    r.register("hdrc", lambda c, arg, idx: c.msg.count(arg.strip()))
    r.register("hflc", lambda c, arg, idx: len(c.msg.get_values(arg.strip())))
    r.register("au", _auth("user"))
    r.register("aU", _auth("full"))
    r.register("ar", _auth("realm"))
    r.register("ad", _auth("domain"))
    r.register("conid", _ro(lambda c: c.conn_id or None))
    r.register("fs", _ro(lambda c: str(c.send_socket) if c.send_socket else None), _set_fs)
    r.register("fsn", _ro(lambda c: (c.send_socket.name or None) if c.send_socket else None))
    r.register("null", _ro(lambda c: None))
    r.register("pp", _ro(lambda c: os.getpid()))
    r.register("env", _env)
    r.register("RANDOM", _ro(lambda c: random.randint(0, 2**31 - 1)))  # noqa: S311 - not crypto
    r.register("rc", _ro(lambda c: 1))
    r.register("retcode", _ro(lambda c: 1))
    register_vars(r)


__all__ = ["find_socket", "register_core", "split_index", "uri_part"]
