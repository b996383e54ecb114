"""Telling script engines that a log level changed, so Lua's ``KSR.dbg`` can stay in Lua.

A Lua ``KSR.dbg("...")`` at a level that logs nothing returned ``false`` only after crossing
into Python (~3.7k instructions, most of it lupa's crossing and the GIL taken back). The Lua
engine notes a level its binding found off and answers the next calls there; the note must go
the moment the level may have changed. Every change of a logger's effective level goes through
``logging.Manager._clear_cache`` (``Logger.setLevel``, ``logging.disable``, ``dictConfig``,
pytest's ``caplog``: Python's own per-logger ``isEnabledFor`` cache relies on it), so the
manager's is wrapped once per process and calls each watcher after it.

CPython keeps the method private: where it is missing, ``watch`` says so and the engine keeps
crossing for every call.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Protocol


class Watcher(Protocol):
    def levels_changed(self) -> None: ...


class _ClearHook:
    """The manager's ``_clear_cache`` (an instance attribute over the class's method): the
    method itself, then the watchers, outside the logging lock the method takes."""

    def __init__(self, manager: logging.Manager, clear: Any) -> None:
        self.manager = manager
        self.clear = clear
        self.watchers: weakref.WeakSet[Any] = weakref.WeakSet()

    def __call__(self) -> None:
        self.clear(self.manager)
        for w in list(self.watchers):
            w.levels_changed()


def watch(logger: logging.Logger, watcher: Watcher) -> bool:
    """Call ``watcher.levels_changed()`` after every level change that can concern ``logger``
    (held weakly: a reloaded script's engine goes away). False: no hook possible here."""
    manager = logger.manager
    hook = manager.__dict__.get("_clear_cache")
    if not isinstance(hook, _ClearHook):
        clear = getattr(type(manager), "_clear_cache", None)
        if clear is None or hook is not None:  # not CPython's logging, or wrapped already
            return False
        hook = _ClearHook(manager, clear)
        setattr(manager, "_clear_cache", hook)  # noqa: B010 - private to typeshed
    hook.watchers.add(watcher)
    return True
