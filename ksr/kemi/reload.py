"""Checked, atomic script reload.

The new version is built aside in a fresh runtime (a new lupa state or a new Python module
namespace), loaded (syntax, top-level code, ``mod_init``), checked (request route present, every
``KSR.*`` function it calls exists) and only then swapped in with one assignment. Anything that
fails leaves the running script in place and raises a ``ScriptError`` naming file and line.

Transactions started under an older version keep running their routes (failure, onreply,
branch) in that version: tm pins ``tx.engine`` when it creates a transaction and
``Server.engine_for`` honours the pin. Everything else (new requests, replies without a
transaction, dialog and timer events) runs in the newest version. See docs/hot-reload.md.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ksr.core import sdnotify
from ksr.core.module import Module
from ksr.core.modules import available_modules
from ksr.core.rpc import RpcError

from .engine import Engine, ScriptError
from .kamailio_modules import KAMAILIO_KEMI_MODULES

if TYPE_CHECKING:
    from ksr.core.core_api import Core

log = logging.getLogger("ksr.script")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a script, with its place when known."""

    file: str
    line: int | None
    message: str
    # False for calls into a module Kamailio (or ksr) has but the configuration does not load:
    # scripts guard those with ``if KSR.auth then``, so a reload and ``ksr check`` accept them
    # with a warning.
    fatal: bool = True

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )

    @classmethod
    def from_error(cls, err: ScriptError, path: Path) -> Problem:
        return cls(err.file or str(path), err.line, err.message)


def check_script(server: Core, path: Path) -> tuple[Engine | None, list[Problem]]:
    """Load ``path`` aside and check it; returns the engine (None if it did not load) and
    every problem found. Unknown KSR names are reported even when the load itself failed."""
    problems: list[Problem] = []
    try:
        engine = server.make_engine(path)
    except ScriptError as err:
        return None, [Problem.from_error(err, path)]
    loaded: Engine | None = engine
    try:
        engine.load()
    except ScriptError as err:
        problems.append(Problem.from_error(err, path))
        loaded = None
    except Exception as err:  # a runtime that breaks in an unexpected way is still a refusal
        problems.append(Problem(str(path), None, f"cannot load: {type(err).__name__}: {err}"))
        loaded = None
    try:
        names = engine.check_names()
    except (OSError, UnicodeDecodeError):
        names = []  # unreadable: the load error already says so
    for text in names:
        file, line, message = _split_check_line(text, path)
        parts = message.rsplit(" ", 1)[-1].split(".")
        missing_module = len(parts) == 3 and parts[1] not in server.registry.functions
        known = missing_module and (
            parts[1] in KAMAILIO_KEMI_MODULES or parts[1] in available_modules(server.config.mpath)
        )
        if known:
            # a module Kamailio has, not loaded here: scripts guard such calls with
            # ``if not KSR.rtpproxy then return end``, so this is a warning, not an error
            message = (
                f"KSR.{parts[1]}.{parts[2]}: module {parts[1]} is not loaded "
                "(the call fails if it runs; guard it with a check that KSR."
                f"{parts[1]} exists, or add {parts[1]!r} to loadmodule if ksr provides it)"
            )
        elif missing_module:
            message += f" (no loaded module provides KSR.{parts[1]}: check loadmodule)"
        problems.append(Problem(file, line, message, fatal=not known))
    problems.sort(key=lambda p: (p.file, p.line or 0))
    return loaded, problems


def _split_check_line(text: str, path: Path) -> tuple[str, int | None, str]:
    """``'file:12: message'`` (check_names' format) -> parts."""
    prefix = f"{path}:"
    if text.startswith(prefix):
        line, _, message = text[len(prefix) :].partition(": ")
        if line.isdigit():
            return str(path), int(line), message
    return str(path), None, text


def reload_script(server: Core, path: Path | None = None) -> dict[str, Any]:
    """Replace the running script by a checked new version; the reply of the reload RPCs."""
    target = Path(path or server.script_path or "")
    if not str(target):
        raise ScriptError("no routing script to reload")
    sdnotify.reloading()
    try:
        return _reload(server, target)
    finally:
        sdnotify.ready()  # the new script, or the old one still: serving either way


def _reload(server: Core, target: Path) -> dict[str, Any]:
    started = time.perf_counter()
    engine, found = check_script(server, target)
    problems = [p for p in found if p.fatal]
    for p in found:
        if not p.fatal:
            log.warning("%s", p)
    if engine is None or problems:
        text = "; ".join(str(p) for p in problems) or f"{target}: cannot load"
        log.error("reload of %s refused, the running script stays: %s", target, text)
        first = problems[0] if problems else Problem(str(target), None, "cannot load")
        raise ScriptError(text if len(problems) > 1 else first.message, first.file, first.line)
    old = server.engine
    engine.version = (old.version + 1) if old is not None else 1
    server.engine = engine  # the swap: the next message runs the new version
    server.script_path = target
    took = time.perf_counter() - started
    engine.mtime = _mtime(engine.path)
    log.info("reloaded %s: version %d now runs (%.1f ms)", target, engine.version, took * 1000)
    return {
        "old": old.version if old is not None else 0,
        "new": engine.version,
        "file": str(target),
        "language": engine.language,
        "loaded_at": engine.loaded_at,
        "took_ms": round(took * 1000, 3),
    }


def script_info(engine: Engine | None) -> dict[str, Any]:
    if engine is None:
        return {}
    return {
        "file": str(engine.path),
        "language": engine.language,
        "version": engine.version,
        "loaded_at": engine.loaded_at,
    }


def api_list(server: Core) -> dict[str, Any]:
    """Every KSR function of the running server (app_lua.api_list / app_python.api_list)."""
    methods = []
    for f in server.registry:
        methods.append(
            {
                "module": f.submodule,
                "name": f.name,
                "ret": f.returns,
                "params": [f"{t} {n}" for t, n in zip(f.params, f.param_names, strict=True)],
            }
        )
    return {"msize": len(methods), "methods": methods}


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


class ScriptWatcher:
    """Reloads the script when its file changes (polled on the server timer).

    A broken save is refused once and logged; the watcher waits for the next change rather
    than retrying the same broken file every tick.
    """

    def __init__(self, server: Core, language: str) -> None:
        self.server = server
        self.language = language
        self.seen: float | None = None

    def tick(self) -> None:
        engine = self.server.engine
        if engine is None or engine.language != self.language:
            return
        now = _mtime(engine.path)
        if now is None:
            return
        if self.seen is None:
            self.seen = engine.mtime or now
        # Unchanged, or already loaded by an RPC reload since the last tick.
        if now in (self.seen, engine.mtime):
            self.seen = now
            return
        self.seen = now
        try:
            reload_script(self.server, engine.path)
        except ScriptError:
            pass  # logged by reload_script; the running version stays


class ScriptModule(Module):
    """Base of app_lua and app_python3: reload for one script language, and file watching."""

    language = ""

    def init(self) -> None:
        self.watcher = ScriptWatcher(self.server, self.language)

    async def start(self, nursery: trio.Nursery) -> None:
        if getattr(self.params, "reload_watch", 0):
            interval = max(0.05, float(self.params.reload_watch_interval))
            self.server.timers.every(interval, self.watcher.tick)

    def do_reload(self, enabled: bool = True) -> dict[str, Any]:
        engine = self.server.engine
        if not enabled:
            raise RpcError(500, "Reload Failed: reload is disabled (modparam reload = 0)")
        if engine is None or engine.language != self.language:
            raise RpcError(
                500, f"Reload Failed: the running script is not a {self.language} script"
            )
        try:
            return reload_script(self.server, engine.path)
        except ScriptError as err:
            raise RpcError(500, f"Reload Failed: {err}") from None

    def list_scripts(self) -> dict[str, Any]:
        engine = self.server.engine
        if engine is None or engine.language != self.language:
            return {"scripts": []}
        return {"scripts": [{"entry": 0, **script_info(engine)}]}
