"""Loading the modules of ``loadmodule``: their classes, their parameters, their order.

The core's own KSR sub-modules (``KSR.*``, ``KSR.pv``, ``KSR.hdr``, ``KSR.x``) come first; a module's
``depends`` must be loaded too, and ``init()`` runs in dependency order, so a module finds the
APIs of the modules it depends on already initialised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ksr.kemi.core_exports import CoreExports
from ksr.kemi.hdr_exports import HdrExports
from ksr.kemi.pv_exports import PvExports
from ksr.kemi.x_exports import XExports

from .config import ConfigError
from .ignored_params import warn_ignored
from .module import Module
from .modules import ALWAYS_LOADED, load_module_class

if TYPE_CHECKING:
    from .server import Server

# script engines are chosen by the script's file, not loaded as modules: their tables are fine
ENGINE_MODULES = ("app_lua", "app_python3", "app_python")


def load_modules(server: Server) -> None:
    """Construct every module of the configuration into ``server.modules`` (registering its
    KSR functions and RPC commands), then ``init()`` them in dependency order."""
    config = server.config
    for core_cls in (CoreExports, PvExports, HdrExports, XExports):
        core = core_cls(server, None)
        server.modules[core_cls.name] = core
        server.registry.add_module(core, core_cls.submodule())
    wanted = list(dict.fromkeys([*config.loadmodule, *ALWAYS_LOADED]))
    classes: dict[str, type[Module]] = {}
    i = 0
    while i < len(wanted):
        name = wanted[i]
        try:
            cls = load_module_class(name, config.mpath)
        except ConfigError as err:  # point at the loadmodule line of the file
            raise config.error(str(err), ["loadmodule"]) from None
        if cls is not None and cls not in classes.values():  # app_python = app_python3
            classes[name] = cls
            for dep in cls.depends:
                if dep not in wanted:
                    raise config.error(
                        f"module '{name}' needs module '{dep}': add \"{dep}\" to loadmodule",
                        ["loadmodule"],
                    )
        i += 1
    for name in config.modparam:
        if name not in classes and name not in ENGINE_MODULES:
            raise config.error(
                f"[modparam.{name}] given but module '{name}' is not in loadmodule "
                f'(loaded: {", ".join(wanted)}; add "{name}" to loadmodule or remove the table)',
                ["modparam", name],
            )
    for name, cls in classes.items():
        params = config.module_params(name, cls.Params)
        warn_ignored(name, params, config.source)
        inst = cls(server, params)
        server.modules[cls.name] = inst
        server.registry.add_module(inst, cls.submodule())
        server.rpc.add_object(inst)
        server.pv.add_object(inst)
    for inst in dependency_order(server.modules):
        inst.init()
    from .core_rpc import CoreRpc

    server.rpc.add_object(CoreRpc(server))


def dependency_order(modules: dict[str, Module]) -> list[Module]:
    """Modules ordered so that each comes after the modules it depends on (stable otherwise),
    so init() can look up the APIs of its dependencies."""
    out: dict[str, Module] = {}
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in out or name in visiting:
            return  # done, or a dependency cycle: keep the order given
        visiting.add(name)
        for dep in modules[name].depends:
            if dep in modules:
                visit(dep)
        out[name] = modules[name]

    for name in modules:
        visit(name)
    return list(out.values())
