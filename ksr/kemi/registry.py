"""The one export registry: every KSR function of every loaded module, with its signature.

Modules mark methods with ``@kemi``; at start-up the registry collects the bound methods of the
loaded modules. The Lua engine, the Python engine, the type stubs and the API docs are all built
from this registry, so a function is declared exactly once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_type_hints

ParamType = Literal["str", "int"]
ReturnType = Literal["int", "bool", "xval", "none"]

# Type of functions returning Kamailio's "xval": an int, a string or null.
XVal = int | str | None

_MARK = "__ksr_kemi__"

F = TypeVar("F", bound=Callable[..., Any])  # a decorated function keeps its own signature


@dataclass(frozen=True, slots=True)
class KemiSpec:
    name: str | None  # exported name (default: the method name)
    submodule: str | None  # KSR sub-module (default: the module's kemi_name; "" for KSR.*)
    suspends: bool = False


def kemi(
    name: str | None = None, *, submodule: str | None = None, suspends: bool = False
) -> Callable[[F], F]:
    """Mark a module method ``(self, ctx, *params)`` as a KSR function.

    Parameter types come from the annotations (``str`` or ``int``); the return annotation picks
    the convention: ``int``, ``bool``, ``XVal`` (int/str/None) or ``None`` (logging calls).
    ``suspends=True``: the function may wait on I/O (``ksr.suspend.wait``); a Lua route calling
    it is suspended meanwhile instead of blocking the worker (Python routes always can be).
    """

    def mark(fn: F) -> F:
        setattr(fn, _MARK, KemiSpec(name, submodule, suspends))
        return fn

    return mark


@dataclass(slots=True)
class KemiFunction:
    submodule: str  # "" = core KSR.*, else KSR.<submodule>
    name: str
    params: tuple[ParamType, ...]
    param_names: tuple[str, ...]
    returns: ReturnType
    fn: Callable[..., Any]  # bound method: fn(ctx, *params)
    doc: str
    suspends: bool = False  # may wait on I/O (see kemi())

    @property
    def qualname(self) -> str:
        return f"KSR.{self.submodule}.{self.name}" if self.submodule else f"KSR.{self.name}"


def _return_kind(ann: Any) -> ReturnType:
    if ann is bool:
        return "bool"
    if ann is int:
        return "int"
    if ann is None or ann is type(None):
        return "none"
    return "xval"


def describe(
    fn: Callable[..., Any], submodule: str, name: str, suspends: bool = False
) -> KemiFunction:
    """Read a marked method's signature into a KemiFunction."""
    hints = get_type_hints(fn)
    sig = inspect.signature(fn)
    names = [p for p in sig.parameters if p not in ("self", "ctx")]
    types: list[ParamType] = []
    for p in names:
        t = hints.get(p)
        if t is str:
            types.append("str")
        elif t is int:
            types.append("int")
        else:
            raise TypeError(f"{fn.__qualname__}: parameter {p} must be str or int")
    doc = inspect.getdoc(fn) or ""
    return KemiFunction(
        submodule,
        name,
        tuple(types),
        tuple(names),
        _return_kind(hints.get("return")),
        fn,
        doc,
        suspends,
    )


def collect(obj: Any, default_submodule: str) -> Iterator[KemiFunction]:
    """Every ``@kemi`` method of a module instance, bound."""
    for attr in dir(type(obj)):
        raw = getattr(type(obj), attr, None)
        spec = getattr(raw, _MARK, None)
        if spec is None:
            continue
        bound = getattr(obj, attr)
        sub = default_submodule if spec.submodule is None else spec.submodule
        yield describe(bound, sub, spec.name or attr, spec.suspends)


class ExportRegistry:
    """All KSR functions of a running server, grouped by sub-module."""

    def __init__(self) -> None:
        self.functions: dict[str, dict[str, KemiFunction]] = {}

    def add(self, f: KemiFunction) -> None:
        sub = self.functions.setdefault(f.submodule, {})
        if f.name in sub:
            raise ValueError(f"{f.qualname} exported twice")
        sub[f.name] = f

    def add_module(self, obj: Any, default_submodule: str) -> None:
        for f in collect(obj, default_submodule):
            self.add(f)

    def submodules(self) -> list[str]:
        return sorted(self.functions)

    def get(self, submodule: str, name: str) -> KemiFunction | None:
        return self.functions.get(submodule, {}).get(name)

    def __iter__(self) -> Iterator[KemiFunction]:
        for sub in sorted(self.functions):
            for name in sorted(self.functions[sub]):
                yield self.functions[sub][name]

    def has(self, qualname: str) -> bool:
        """``KSR.tm.t_relay`` or ``KSR.info`` exists?"""
        parts = qualname.split(".")
        if parts[0] == "KSR":
            parts = parts[1:]
        if len(parts) == 1:
            return self.get("", parts[0]) is not None
        if len(parts) == 2:
            return self.get(parts[0], parts[1]) is not None
        return False
