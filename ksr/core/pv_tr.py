"""Transformations applied to a PV value: ``$(ru{uri.user})``, ``$(hdr(X){s.len})``...

A transformation is the text between braces: a class (``s``, ``uri``, ``param``, ``nameaddr``,
``tobody``), a name and comma-separated arguments. An unknown one makes the whole spec invalid
at compile time (as Kamailio refuses such a config); a failing one yields null.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from ksr.sip.headers import parse_name_addr, parse_params
from ksr.sip.uri import parse_uri

Value = int | str | None
Tr = Callable[[Value], Value]


def _s(v: Value) -> str | None:
    return None if v is None else str(v)


def _int(v: Value) -> Value:
    if v is None:
        return None
    if isinstance(v, int):
        return v
    t = v.strip()
    n = 0
    sign = 1
    i = 0
    if t[:1] in "+-" and t:
        sign = -1 if t[0] == "-" else 1
        i = 1
    while i < len(t) and t[i].isdigit():
        n = n * 10 + int(t[i])
        i += 1
    return sign * n


def _substr(args: list[str]) -> Tr:
    off, ln = int(args[0]), int(args[1]) if len(args) > 1 else 0

    def tr(v: Value) -> Value:
        s = _s(v)
        if s is None:
            return None
        start = off if off >= 0 else max(0, len(s) + off)
        return s[start:] if ln == 0 else s[start : start + ln]

    return tr


def _select(args: list[str]) -> Tr:
    idx, sep = int(args[0]), (args[1] if len(args) > 1 and args[1] else ",")

    def tr(v: Value) -> Value:
        s = _s(v)
        if s is None:
            return None
        parts = s.split(sep)
        try:
            return parts[idx]
        except IndexError:
            return None

    return tr


def _str_tr(name: str, args: list[str]) -> Tr | None:
    simple: dict[str, Callable[[str], Value]] = {
        "len": len,
        "tolower": str.lower,
        "toupper": str.upper,
        "trim": str.strip,
        "rtrim": str.rstrip,
        "ltrim": str.lstrip,
        "md5": lambda s: hashlib.md5(s.encode(), usedforsecurity=False).hexdigest(),
        "sha256": lambda s: hashlib.sha256(s.encode()).hexdigest(),
        "encode.base64": lambda s: base64.b64encode(s.encode()).decode(),
        "decode.base64": lambda s: base64.b64decode(s.encode()).decode("utf-8", "replace"),
        "encode.hexa": lambda s: s.encode().hex(),
        "decode.hexa": lambda s: bytes.fromhex(s).decode("utf-8", "replace"),
        "unquote": lambda s: s[1:-1] if len(s) > 1 and s[0] == s[-1] and s[0] in "\"'" else s,
        "unbracket": lambda s: s[1:-1] if s.startswith("<") and s.endswith(">") else s,
        "numeric": lambda s: "".join(c for c in s if c.isdigit()),
    }
    if name == "int":
        return _int
    if name in simple:
        fn = simple[name]
        if name == "len":
            return lambda v: 0 if v is None else len(str(v))
        return lambda v: None if v is None else fn(str(v))
    if name == "substr" and args:
        return _substr(args)
    if name == "select" and args:
        return _select(args)
    if name in ("strip", "striptail") and args:
        n = int(args[0])
        if name == "strip":
            return lambda v: None if v is None else str(v)[n:]
        return lambda v: None if v is None else (str(v)[:-n] if n else str(v))
    if name == "replace" and len(args) == 2:
        a, b = args
        return lambda v: None if v is None else str(v).replace(a, b)
    return None


def _uri_tr(name: str, args: list[str]) -> Tr | None:
    def part(v: Value) -> Value:
        s = _s(v)
        if not s:
            return None
        try:
            u = parse_uri(s.strip().strip("<>"))
        except Exception:
            return None
        if name == "user":
            return u.user or ""
        if name in ("host", "domain"):
            return u.host
        if name == "port":
            return "" if u.port is None else str(u.port)
        if name == "passwd":
            return u.password or ""
        if name == "scheme":
            return u.scheme
        if name == "params":
            return "".join(f";{k}" if x is None else f";{k}={x}" for k, x in u.params.items())
        if name == "headers":
            return u.headers or ""
        if name == "param":
            got = u.params.get(args[0].lower(), "") if args else ""
            return got or ""
        if name in ("transport", "ttl", "maddr", "method", "lr", "r2", "user"):
            return u.params.get(name) or ""
        return None

    known = {
        "user",
        "host",
        "domain",
        "port",
        "passwd",
        "scheme",
        "params",
        "headers",
        "param",
        "transport",
        "ttl",
        "maddr",
        "method",
        "lr",
        "r2",
    }
    return part if name in known else None


def _param_tr(name: str, args: list[str]) -> Tr | None:
    sep = (
        args[-1]
        if name in ("value", "in") and len(args) > 1
        else (args[1] if name in ("valueat", "name") and len(args) > 1 else ";")
    )

    def pairs(v: Value) -> list[tuple[str, str]] | None:
        s = _s(v)
        if s is None:
            return None
        out = []
        for p in s.split(sep):
            p = p.strip()
            if p:
                k, _, x = p.partition("=")
                out.append((k.strip(), x.strip()))
        return out

    def tr(v: Value) -> Value:
        ps = pairs(v)
        if ps is None:
            return None
        if name == "value":
            return next((x for k, x in ps if k == args[0]), "")
        if name == "in":
            return 1 if any(k == args[0] for k, _ in ps) else 0
        if name == "count":
            return len(ps)
        if name in ("valueat", "name"):
            try:
                k, x = ps[int(args[0])]
            except (IndexError, ValueError):
                return ""
            return x if name == "valueat" else k
        return None

    if name in ("value", "in", "valueat", "name") and not args:
        return None
    return tr if name in ("value", "in", "count", "valueat", "name") else None


def _addr_tr(cls: str, name: str) -> Tr | None:
    def tr(v: Value) -> Value:
        s = _s(v)
        if not s:
            return None
        try:
            na = parse_name_addr(s)
        except Exception:
            return None
        if name == "uri":
            return na.uri_text
        if name in ("name", "display"):
            return (na.display or "").strip('"')
        if name == "len":
            return len(s)
        if name == "tag":
            return na.tag or ""
        if name == "params":
            return "".join(f";{k}" if x is None else f";{k}={x}" for k, x in na.params.items())
        try:
            u = parse_uri(na.uri_text)
        except Exception:
            return None
        if name == "user":
            return u.user or ""
        if name == "host":
            return u.host
        return None

    ok = {
        "nameaddr": {"uri", "name", "len"},
        "tobody": {"uri", "display", "tag", "user", "host", "params"},
    }
    return tr if name in ok[cls] else None


def compile_tr(text: str) -> Tr | None:
    """One transformation (the text inside ``{}``) or None if unknown."""
    head, *args = [a.strip() for a in text.split(",")]
    cls, _, name = head.partition(".")
    if cls == "s":
        return _str_tr(name, args)
    if cls == "uri":
        return _uri_tr(name, args)
    if cls == "param":
        return _param_tr(name, args)
    if cls in ("nameaddr", "tobody"):
        return _addr_tr(cls, name)
    return None


__all__ = ["Tr", "compile_tr", "parse_params"]
