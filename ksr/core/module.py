"""The shape every ksr module has: its parameters, KSR functions, RPC commands and hooks.

A module is a class. Its ``Params`` (a pydantic model) validates ``[modparam.<name>]``; methods
marked ``@kemi`` become ``KSR.<kemi_name>.<method>``; methods marked ``@rpc("x.y")`` become
JSON-RPC commands; ``start`` runs long-lived tasks in the server's nursery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import trio
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from .server import Server


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModParams(BaseModel):
    """Base of module parameter models: unknown names are an error."""

    model_config = ConfigDict(extra="forbid")


class Module:
    name: ClassVar[str]
    kemi_name: ClassVar[str | None] = None  # KSR sub-module name; None = same as name
    Params: ClassVar[type[BaseModel]] = NoParams
    depends: ClassVar[tuple[str, ...]] = ()  # modules that must be loaded too
    events: ClassVar[tuple[str, ...]] = ()  # event names this module emits

    def __init__(self, server: Server, params: Any) -> None:
        self.server = server
        self.params = params

    @classmethod
    def submodule(cls) -> str:
        return cls.name if cls.kemi_name is None else cls.kemi_name

    def init(self) -> None:
        """Called once every module is constructed (look up other modules' APIs here)."""

    async def start(self, nursery: trio.Nursery) -> None:
        """Start background tasks (timers, sockets). Must return once they are running."""

    def stop(self) -> None:
        """Flush state before the server exits."""

    def share(self, name: str, table: Any) -> None:
        """Make ``table`` the same in every worker process: its ``@replicated`` methods run in
        every worker (ksr/core/replication.py). Call from ``init``; ``name`` is unique per
        server, e.g. ``"htable:ipban"``."""
        self.server.shared.register(name, table)
