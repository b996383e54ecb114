"""Pseudo-variables: ``$ru``, ``$hdr(Name)``, ``$(avp(x)[1])``, ``$(ru{uri.user})``...

A spec string is compiled once (cached) into a handler, a name argument, an index and a chain of
transformations. PVs inside the argument (``$sht(ipban=>$si)``) are expanded at each access.
Modules add their own classes (``$sht``, ``$T_reply_code``, ``$dlg_var``...) with ``register``;
the core ones live in ``pv_core.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ksr.sip.headers import header_key

from .pv_tr import Tr, compile_tr

if TYPE_CHECKING:
    from .context import MsgContext

Value = int | str | None
Getter = Callable[["MsgContext", str, "int | None"], Value]
Setter = Callable[["MsgContext", str, Value], bool]

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__ksr_pv__"


def pv(name: str, *, sets: bool = False) -> Callable[[F], F]:
    """Mark a module method as the getter ``(ctx, arg, idx) -> value`` of ``$name`` (with
    ``sets=True``: its setter ``(ctx, arg, value) -> bool``), as ``@kemi`` marks a KSR
    function: the module loader registers it."""

    def mark(fn: F) -> F:
        setattr(fn, _MARK, (name, sets))
        return fn

    return mark


ALL = -(10**9)  # the index of ``[*]``
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


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
    idx: int | None  # None = first/newest, -1 last...; ALL for [*]
    name: str
    trs: list[Tr] = field(default_factory=list)
    idx_pv: str | None = None  # index given as a PV: $(avp(x)[$var(i)])
    fixed: bool = False  # no PV in the argument or the index: both as compiled


@dataclass(slots=True)
class _Parsed:
    name: str
    arg: str | None
    idx: str | None
    trs: list[str]


def _balanced(text: str, start: int, open_: str, close: str) -> int:
    """Index just after the bracket closing the one at ``start``, or -1."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def _scan_name(text: str, i: int) -> int:
    while i < len(text) and text[i] in _NAME_CHARS:
        i += 1
    return i


def _parse_body(body: str, allow_tr: bool) -> _Parsed | None:
    """``name``, ``name(arg)``, and inside ``$( )`` also ``[idx]`` and ``{tr}`` suffixes."""
    j = _scan_name(body, 0)
    if j == 0:
        return None
    name, arg, idx, trs = body[:j], None, None, []
    if j < len(body) and body[j] == "(":
        end = _balanced(body, j, "(", ")")
        if end < 0:
            return None
        arg, j = body[j + 1 : end - 1], end
    if allow_tr and j < len(body) and body[j] == "[":
        end = body.find("]", j)
        if end < 0:
            return None
        idx, j = body[j + 1 : end].strip(), end + 1
    while allow_tr and j < len(body) and body[j] == "{":
        end = _balanced(body, j, "{", "}")
        if end < 0:
            return None
        trs.append(body[j + 1 : end - 1])
        j = end
    if j != len(body):
        return None
    return _Parsed(name, arg, idx, trs)


def spec_end(text: str, start: int) -> int:
    """End of the PV spec starting at ``text[start] == "$"`` (for format strings), or -1."""
    i = start + 1
    if i < len(text) and text[i] == "(":
        return _balanced(text, i, "(", ")")
    j = _scan_name(text, i)
    if j == i:
        return -1
    if j < len(text) and text[j] == "(":
        end = _balanced(text, j, "(", ")")
        return end if end > 0 else j
    return j


class PvRegistry:
    def __init__(self) -> None:
        from .pv_core import register_core

        self.defs: dict[str, PvDef] = {}
        self._cache: dict[str, CompiledPv | None] = {}
        register_core(self)

    def register(self, name: str, get: Getter, set: Setter | None = None) -> None:
        self.defs[name] = PvDef(get, set)
        self._cache.clear()

    def add_object(self, obj: object) -> None:
        """Register the ``@pv`` methods of a module instance."""
        getters: dict[str, Getter] = {}
        setters: dict[str, Setter] = {}
        for attr in dir(type(obj)):
            spec = getattr(getattr(type(obj), attr, None), _MARK, None)
            if spec is not None:
                name, sets = spec
                (setters if sets else getters)[name] = getattr(obj, attr)
        for name in setters.keys() - getters.keys():
            raise ValueError(f"${name}: a @pv setter without a getter")
        for name, get in getters.items():
            self.register(name, get, setters.get(name))

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
        if not spec.startswith("$") or len(spec) < 2:
            return None
        if spec[1] == "(":
            if not spec.endswith(")"):
                return None
            p = _parse_body(spec[2:-1], True)
        else:
            p = _parse_body(spec[1:], False)
        if p is None:
            return None
        pv = self.defs.get(p.name)
        if pv is None:
            return None
        idx: int | None = None
        idx_pv: str | None = None
        if p.idx is not None:
            if p.idx == "*":
                idx = ALL
            elif p.idx.startswith("$"):
                idx_pv = p.idx
            else:
                try:
                    idx = int(p.idx)
                except ValueError:
                    return None
        trs: list[Tr] = []
        for t in p.trs:
            tr = compile_tr(t)
            if tr is None:
                return None
            trs.append(tr)
        arg = p.arg or ""
        fixed = "$" not in arg and idx_pv is None
        return CompiledPv(pv, arg, idx, p.name, trs, idx_pv, fixed)

    def _arg_idx(self, ctx: MsgContext, c: CompiledPv) -> tuple[str, int | None]:
        arg = self.expand(ctx, c.arg) if "$" in c.arg else c.arg
        idx = c.idx
        if c.idx_pv is not None:
            v = self.get(ctx, c.idx_pv)
            try:
                idx = int(v) if v is not None else None
            except ValueError:
                idx = None
        return arg, idx

    def get(self, ctx: MsgContext, spec: str) -> Value:
        # scripts read the same few specs all the time ($ru, $si, $hdr(X)): the compiled
        # one from the cache, and its argument and index as they are when they hold no PV
        c = self._cache.get(spec) or self.compile(spec)
        if c is None:
            return None
        try:
            if c.fixed:
                v = c.pv.get(ctx, c.arg, c.idx)
            else:
                arg, idx = self._arg_idx(ctx, c)
                v = c.pv.get(ctx, arg, idx)
            if c.trs:
                for tr in c.trs:
                    v = tr(v)
            return v
        except Exception:
            return None

    def set(self, ctx: MsgContext, spec: str, value: Value) -> bool:
        c = self.compile(spec)
        if c is None or c.pv.set is None or c.trs:
            return False
        try:
            arg, idx = self._arg_idx(ctx, c)
            if idx is not None:
                arg = f"{arg}\x00{'*' if idx == ALL else idx}"
            return bool(c.pv.set(ctx, arg, value))
        except Exception:
            return False

    def is_valid(self, spec: str) -> bool:
        return self.compile(spec) is not None

    def expand(self, ctx: MsgContext, text: str) -> str:
        """Replace every PV in a format string with its value ("<null>" for null)."""
        if "$" not in text:
            return text
        out: list[str] = []
        i = 0
        n = len(text)
        while i < n:
            d = text.find("$", i)
            if d < 0:
                out.append(text[i:])
                break
            out.append(text[i:d])
            end = spec_end(text, d)
            c = self.compile(text[d:end]) if end > 0 else None
            if c is None:
                out.append("$")
                i = d + 1
                continue
            v = self.get(ctx, text[d:end])
            out.append("<null>" if v is None else str(v))
            i = end
        return "".join(out)

    def expand_arg(self, ctx: MsgContext, arg: str) -> str:
        """Expand PVs inside a class argument (``$sht(ipban=>$si)``)."""
        return self.expand(ctx, arg) if "$" in arg else arg


def split_index(arg: str) -> tuple[str, int | None]:
    """A setter's argument with the index the registry appended (``name\\x00idx``)."""
    name, sep, idx = arg.partition("\x00")
    if not sep:
        return arg, None
    return name, ALL if idx == "*" else int(idx)


__all__ = ["ALL", "PvRegistry", "Value", "header_key", "split_index"]
