"""The shape every ksr module has: its parameters, KSR functions, RPC commands and hooks.

A module is a class. Its ``Params`` (a pydantic model) validates ``[modparam.<name>]``; methods
marked ``@kemi`` become ``KSR.<kemi_name>.<method>``; methods marked ``@rpc("x.y")`` become
JSON-RPC commands; ``start`` runs long-lived tasks in the server's nursery.
"""

from __future__ import annotations

import types
import typing
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import trio
from pydantic import BaseModel, ConfigDict, model_validator

if TYPE_CHECKING:
    from .core_api import Core


Api = TypeVar("Api")


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Kamailio's cfg words for integer flags (modparam("auth_db", "calculate_ha1", yes)).
FLAG_WORDS = {
    "yes": 1,
    "on": 1,
    "true": 1,
    "enable": 1,
    "no": 0,
    "off": 0,
    "false": 0,
    "disable": 0,
}


class ModParams(BaseModel):
    """Base of module parameter models: unknown names are an error.

    Values are taken as Kamailio users write them: an integer parameter accepts ``yes``/``no``/
    ``on``/``off`` (and ``true``/``false``/``enable``/``disable``), and a parameter Kamailio lets
    you set several times (a ``list[str]`` here, e.g. htable's ``htable``) accepts one string.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _kamailio_forms(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None:
                continue
            kinds = _plain_kinds(field.annotation)
            if isinstance(value, str) and int in kinds and str not in kinds:
                word = FLAG_WORDS.get(value.strip().lower())
                if word is not None:
                    out[name] = word
            elif isinstance(value, str) and list in kinds:
                out[name] = [value]
        return out


def _plain_kinds(annotation: Any) -> set[type]:
    """The plain types an annotation allows (``int | str`` -> {int, str}; ``list[str]`` ->
    {list})."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds: set[type] = set()
        for arg in typing.get_args(annotation):
            kinds |= _plain_kinds(arg)
        return kinds
    if origin is not None:
        return {origin} if isinstance(origin, type) else set()
    return {annotation} if isinstance(annotation, type) else set()


class Module:
    name: ClassVar[str]
    kemi_name: ClassVar[str | None] = None  # KSR sub-module name; None = same as name
    Params: ClassVar[type[BaseModel]] = NoParams
    depends: ClassVar[tuple[str, ...]] = ()  # modules that must be loaded too
    events: ClassVar[tuple[str, ...]] = ()  # event names this module emits

    def __init__(self, server: Core, params: Any) -> None:
        self.server = server  # what a module may use of the core (ksr/core/core_api.py)
        self.params = params

    @classmethod
    def submodule(cls) -> str:
        return cls.name if cls.kemi_name is None else cls.kemi_name

    def init(self) -> None:
        """Called once every module is constructed (look up other modules' APIs here)."""

    def may_wait(self, name: str) -> bool:
        """Whether the KSR function ``name`` (declared ``@kemi(suspends=True)``) may wait on
        I/O with this configuration; asked once per loaded script. False: a Lua route calls it
        as a plain call (no greenlet: ~26,000 instructions less per call)."""
        return True

    def api(self) -> object | None:
        """What other modules may use of this one, as Kamailio's ``load_<module>_api``: an
        instance of the class its ``api.py`` declares (``TmApi``...), or None (no API)."""
        return None

    def require(self, name: str, kind: type[Api]) -> Api:
        """The API of module ``name`` (from ``init``); a clear start-up error when that module
        is not loaded."""
        found = self.optional(name, kind)
        if found is None:
            from .config import ConfigError

            raise ConfigError(
                f'module {self.name} needs the {name} module: add "{name}" to loadmodule',
                self.server.config.source,
            )
        return found

    def optional(self, name: str, kind: type[Api]) -> Api | None:
        """The API of module ``name`` when it is loaded, else None."""
        mod = self.server.module(name)
        if mod is None:
            return None
        found = mod.api()
        if not isinstance(found, kind):
            raise TypeError(f"module {name} offers no {kind.__name__}")
        return found

    async def start(self, nursery: trio.Nursery) -> None:
        """Start background tasks (timers, sockets). Must return once they are running."""

    def stop(self) -> None:
        """Flush state before the server exits."""

    def share(self, name: str, table: Any) -> None:
        """Make ``table`` the same in every worker process: its ``@replicated`` methods run in
        every worker (ksr/core/replication.py). Call from ``init``; ``name`` is unique per
        server, e.g. ``"htable:ipban"``."""
        self.server.shared.register(name, table)
