"""Finding and loading modules: folders named after the module in the module path.

The bundled ``modules/`` folder is always searched last; ``mpath`` entries of the config come
first, so users can add (or override) modules, as Kamailio's ``mpath``/``loadmodule``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from .config import ConfigError
from .module import Module

BUNDLED = Path(__file__).resolve().parent.parent / "modules"

# Kamailio module names whose functions ksr provides elsewhere, or that have nothing to do here.
# (The script engines are chosen by the script's file extension; database drivers by db_url.)
ALIASES: dict[str, str | None] = {
    "app_python": "app_python3",
    "ctl": None,
    "cfg_rpc": None,
    "db_sqlite": None,
    "db_postgres": None,
    "db_redis": None,
    "db_mysql": None,
    "db_text": None,
}


# Loaded whatever loadmodule says: the script engines' RPC commands (reload, list) always exist.
ALWAYS_LOADED = ("app_lua", "app_python3")


def module_dirs(mpath: list[str]) -> list[Path]:
    return [Path(p) for p in mpath] + [BUNDLED]


def available_modules(mpath: list[str]) -> list[str]:
    names: set[str] = set()
    for d in module_dirs(mpath):
        if d.is_dir():
            names.update(p.name for p in d.iterdir() if (p / "__init__.py").is_file())
    return sorted(names)


def load_module_class(name: str, mpath: list[str]) -> type[Module] | None:
    """The Module class of ``name``; None for names ksr accepts but has nothing to load for."""
    target = ALIASES.get(name, name)
    if target is None:
        return None
    for d in module_dirs(mpath):
        folder = d / target
        if not (folder / "__init__.py").is_file():
            continue
        if d == BUNDLED:
            mod = importlib.import_module(f"ksr.modules.{target}")
        else:
            modname = f"ksr_usermod_{target}"
            spec = importlib.util.spec_from_file_location(
                modname, folder / "__init__.py", submodule_search_locations=[str(folder)]
            )
            if spec is None or spec.loader is None:
                raise ConfigError(f"cannot load module folder {folder}")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod
            spec.loader.exec_module(mod)
        cls: object = getattr(mod, "MODULE", None)
        if not (isinstance(cls, type) and issubclass(cls, Module)):
            raise ConfigError(f"module folder {folder} defines no MODULE class")
        return cls
    raise ConfigError(
        f"unknown module '{name}' in loadmodule (searched {', '.join(str(d) for d in module_dirs(mpath))}; "
        f"available: {', '.join(available_modules(mpath))})"
    )
