"""The one export registry: every KSR function of every loaded module, with its signature.

Modules mark methods with ``@kemi``; at start-up the registry collects the bound methods of the
loaded modules. The Lua engine, the Python engine, the type stubs and the API docs are all built
from this registry, so a function is declared exactly once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, get_type_hints

ParamType = Literal["str", "int"]
ReturnType = Literal["int", "bool", "xval", "none"]

# Type of functions returning Kamailio's "xval": an int, a string or null.
XVal = int | str | None

# What a binding may answer itself, compiled, instead of calling the function (which gives the
# same answer): ("method", "INVITE") is ``ctx.method == "INVITE"``; ("log", level) logs the text
# at that level of the "ksr.script" logger; ("totag", 0) is 1 when the To header has a tag, else
# -1.
Inline = tuple[Literal["method", "log", "totag"], str | int]

# The callable a binding calls instead of the method, given the module instance: one of its
# compiled parts taking the method's arguments, ``(ctx, *params)``, and giving its answer (the
# method is then only its reference: an interpreted frame less per KSR call).
Via = Callable[[Any], Callable[..., Any]]

_MARK = "__ksr_kemi__"


class Route:
    """Kamailio's route type flags (its exports tables' ``REQUEST_ROUTE|FAILURE_ROUTE...``):
    where a KSR function is meant to be used. Kamailio's KEMI does not refuse a call elsewhere,
    and neither does ksr: the call runs and a warning names the function and the route."""

    REQUEST = 1
    FAILURE = 2
    TM_ONREPLY = 4
    BRANCH = 8
    ONSEND = 16
    ERROR = 32
    LOCAL = 64
    CORE_ONREPLY = 128
    BRANCH_FAILURE = 256
    ONREPLY = TM_ONREPLY | CORE_ONREPLY
    EVENT = REQUEST  # as Kamailio: event routes run as request routes
    ANY = 0xFFFFFFFF

    # ksr's route names (ksr.core.context.RouteType) -> flag
    BY_NAME: ClassVar[dict[str, int]] = {
        "request": REQUEST,
        "reply": CORE_ONREPLY,
        "onreply": TM_ONREPLY,
        "failure": FAILURE,
        "branch": BRANCH,
        "branch_failure": BRANCH_FAILURE,
        "event": EVENT,
        "onsend": ONSEND,
    }
    NAMES: ClassVar[tuple[tuple[int, str], ...]] = (
        (REQUEST, "REQUEST_ROUTE"),
        (FAILURE, "FAILURE_ROUTE"),
        (TM_ONREPLY, "TM_ONREPLY_ROUTE"),
        (BRANCH, "BRANCH_ROUTE"),
        (ONSEND, "ONSEND_ROUTE"),
        (ERROR, "ERROR_ROUTE"),
        (LOCAL, "LOCAL_ROUTE"),
        (CORE_ONREPLY, "CORE_ONREPLY_ROUTE"),
        (BRANCH_FAILURE, "BRANCH_FAILURE_ROUTE"),
    )

    @classmethod
    def describe(cls, flags: int) -> str:
        """``REQUEST_ROUTE|FAILURE_ROUTE`` (Kamailio's spelling)."""
        if flags == cls.ANY:
            return "ANY_ROUTE"
        return "|".join(name for bit, name in cls.NAMES if flags & bit)


F = TypeVar("F", bound=Callable[..., Any])  # a decorated function keeps its own signature


@dataclass(frozen=True, slots=True)
class KemiSpec:
    name: str | None  # exported name (default: the method name)
    submodule: str | None  # KSR sub-module (default: the module's kemi_name; "" for KSR.*)
    suspends: bool = False
    routes: int = Route.ANY
    ends_route: bool = False
    varargs: bool = False
    engines: tuple[str, ...] = ("lua", "python")
    inline: Inline | None = None
    via: Via | None = None


def kemi(
    name: str | None = None,
    *,
    submodule: str | None = None,
    suspends: bool = False,
    routes: int = Route.ANY,
    ends_route: bool = False,
    varargs: bool = False,
    engines: tuple[str, ...] = ("lua", "python"),
    inline: Inline | None = None,
    via: Via | None = None,
) -> Callable[[F], F]:
    """Mark a module method ``(self, ctx, *params)`` as a KSR function.

    Parameter types come from the annotations (``str`` or ``int``); the return annotation picks
    the convention: ``int``, ``bool``, ``XVal`` (int/str/None) or ``None`` (logging calls).
    ``suspends=True``: the function may wait on I/O (``ksr.suspend.wait``); a Lua route calling
    it is suspended meanwhile instead of blocking the worker (Python routes always can be).
    ``routes``: the Route flags it is meant for (Kamailio's exports table); a call in another
    route runs all the same, with a warning. ``ends_route``: the route ends after the call
    (``KSR.x.exit``); ``varargs``: further arguments are accepted and ignored; ``engines``: the
    script languages that have it. ``inline``: the binding answers the call itself (see
    ``Inline``); ``via``: the binding calls the module's compiled part this gives instead of
    the method (see ``Via``). Either way the function stays the reference and must give the
    same answer.
    """

    def mark(fn: F) -> F:
        spec = KemiSpec(
            name, submodule, suspends, routes, ends_route, varargs, engines, inline, via
        )
        setattr(fn, _MARK, spec)
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
    routes: int = Route.ANY  # Route flags it is meant for (see kemi())
    ends_route: bool = False  # the route ends after the call (see kemi())
    varargs: bool = False
    engines: tuple[str, ...] = ("lua", "python")
    inline: Inline | None = None  # answered by the binding itself (see kemi())
    via: Via | None = None  # what the binding calls instead of fn (see kemi())

    def target(self) -> Callable[..., Any]:
        """What a binding calls: ``via``'s callable for the module ``fn`` is bound to, else
        ``fn`` (also when the module is not set up for ``via`` yet: no ``init()`` ran)."""
        if self.via is not None:
            owner = getattr(self.fn, "__self__", None)
            if owner is not None:
                try:
                    return self.via(owner)
                except AttributeError:
                    pass
        return self.fn

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
    fn: Callable[..., Any],
    submodule: str,
    name: str,
    suspends: bool = False,
    routes: int = Route.ANY,
    spec: KemiSpec | None = None,
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
        routes,
        spec.ends_route if spec is not None else False,
        spec.varargs if spec is not None else False,
        spec.engines if spec is not None else ("lua", "python"),
        spec.inline if spec is not None else None,
        spec.via if spec is not None else None,
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
        yield describe(bound, sub, spec.name or attr, spec.suspends, spec.routes, spec)


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
