"""Which build of ksr runs: its hot sans-IO modules compiled with mypyc, or pure Python.

Installing ksr (``pip install``, ``pip install -e``, the wheel) compiles the modules of
``COMPILED`` with mypyc when it can (setup.py) into extension modules beside their ``.py``
sources. The sources are the fallback, imported instead of the extension modules when

- ``KSR_PURE_PYTHON=1`` is set (set at install time, it also skips compiling);
- the install did not compile (no C compiler or Python headers, mypyc failed: it says why);
- a compiled module's source changed since the build (``make native`` compiles again).

``select`` runs first of all, in ``ksr/__init__.py``; ``BUILD`` then says which build runs
(``ksr --version``, the start-up log line). This file itself is never compiled. docs/build.md.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType

ENV = "KSR_PURE_PYTHON"
# The one shared library of the compiled modules: ksr/native__mypyc.<abi>.so
GROUP = "ksr.native"
# What setup.py compiles: the sans-IO SIP core (parsing, header values, URIs, the proxy's
# building blocks, the transaction and dialog machines), run for every message, and the pure
# logic of the core and of modules that runs for most requests where compiling it pays (each
# measured: bench/README.md). The packages' __init__ stay pure (ksr/sip's only names what its
# modules export; a module's holds its Module class and @kemi methods, which stay Python).
COMPILED: tuple[str, ...] = (
    "ksr.sip.abnf",
    "ksr.sip.auth_header",
    "ksr.sip.builders",
    "ksr.sip.dialog_state",
    "ksr.sip.digest",
    "ksr.sip.errors",
    "ksr.sip.framing",
    "ksr.sip.headers",
    "ksr.sip.hep",
    "ksr.sip.hostport",
    "ksr.sip.message",
    "ksr.sip.owner",
    "ksr.sip.received",
    "ksr.sip.transaction",
    "ksr.sip.uri",
    "ksr.core.hashes",  # Kamailio's core_hash: a loop over the bytes of each new Call-ID
    # every message: its context (MsgContext: compiled tm and dialog then read its fields and
    # properties directly), the receive pipeline, the core statistics it counts, the route
    # runs' bookkeeping (scripts) and the counters and histograms themselves (stats)
    "ksr.core.context",
    "ksr.core.core_stats",
    "ksr.core.pipeline",
    "ksr.core.scripts",
    "ksr.core.stats",
    "ksr.core.stateless",  # local replies without a transaction (sl, registrar, sanity)
    # the callables a script calls for its KSR functions (~26 per call): one frame each, around
    # every module method a route calls
    "ksr.kemi.bindings",
    # the engines' synchronous route runs (~8 per call), from Scripts into the script
    "ksr.kemi.runs",
    # the timer heap: tm and dialog start and cancel a dozen timers each per call (its task,
    # a coroutine trio runs, stays Python: ksr/core/timer_task.py)
    "ksr.core.timers",
    # the way out: every message sent asks Sender.send, the host table and (final replies)
    # the latency histograms, ~7 sends per call
    "ksr.core.sending",
    "ksr.core.hosts",
    "ksr.core.latency",
    # "is this me?": tm, rr and the pipeline ask ~6 times per call
    "ksr.core.myself",
    # where a URI sends to when no name server need be asked: every relayed request and the
    # 2xx's ACK (the DNS lookups, trio tasks, stay in ksr/core/resolver.py)
    "ksr.core.resolve_now",
    # a datagram's wake-up: the reader of a UDP socket, and the serving clock's wait that
    # calls it while trio sleeps (ksr/core/idle_wait.py stays Python: trio's Clock base)
    "ksr.transport.udp_read",
    "ksr.core.idle_loop",
    "ksr.modules.sanity.checks",  # the sanity checks: sanity_check runs on every request
    "ksr.modules.maxfwd.process",  # process_maxfwd: every request
    # registrar's save() but its Module (reading a REGISTER, the bindings to write) and the
    # bindings themselves (usrloc's Contact): a REGISTER's own Python code
    "ksr.modules.registrar.parse",
    "ksr.modules.registrar.save",
    # lookup() of every new call's INVITE (its binding calls Lookup)
    "ksr.modules.registrar.lookup",
    "ksr.modules.registrar.methods",  # a REGISTER's Allow as the contact's method mask
    "ksr.modules.usrloc.contact",
    "ksr.modules.usrloc.api",
    # tm's stateful proxy but its Module: transactions and branches (txn), the shell that runs
    # the machines' actions (engine), t_relay (relay), the reply path (replies) and the
    # callbacks and their events (api: made and read for every transaction by dialog)
    "ksr.modules.tm.api",
    "ksr.modules.tm.txn",
    "ksr.modules.tm.engine",
    "ksr.modules.tm.relay",
    "ksr.modules.tm.replies",
    # rr but its Module: loose_route of every in-dialog request, record_route's lump
    "ksr.modules.rr.route",
    # dialog but its Module: the dialogs (model), their table, the engine that feeds them a
    # call's messages and timers (manager), how it follows tm (tmglue), the legs (requests)
    "ksr.modules.dialog.clock",
    "ksr.modules.dialog.model",
    "ksr.modules.dialog.table",
    "ksr.modules.dialog.requests",
    "ksr.modules.dialog.manager",
    "ksr.modules.dialog.tmglue",
)
# Written by setup.py next to this file: COMPILED (bool), DETAIL (the compiler, or why the
# build is pure Python) and DIGEST (source_digest of the sources the build compiled).
STAMP = "ksr._native_build"

BUILD = "pure Python (not selected yet)"  # set by select()


def pure_requested(env: Mapping[str, str]) -> bool:
    return env.get(ENV, "") not in ("", "0")


def source_paths(root: Path) -> list[Path]:
    """The sources of COMPILED in the tree at ``root`` (the folder that holds ``ksr/``)."""
    return [root.joinpath(*name.split(".")).with_suffix(".py") for name in COMPILED]


def source_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in source_paths(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class PureFinder(MetaPathFinder):
    """Finds the ``.py`` source of a COMPILED module before the import system finds the
    extension module beside it (it prefers extension modules)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in _NAMES or not path:
            return None
        leaf = fullname.rpartition(".")[2] + ".py"
        for folder in path:
            source = os.path.join(folder, leaf)
            if os.path.isfile(source):
                return spec_from_file_location(fullname, source)
        return None


_NAMES = frozenset(COMPILED)


def why_pure(root: Path) -> str | None:
    """None when the compiled modules under ``root`` were built from the sources there, else
    why the sources must run."""
    try:
        stamp = importlib.import_module(STAMP)
    except ImportError:
        return "not compiled: pip install -e ."
    if not stamp.COMPILED:
        return str(stamp.DETAIL)
    for path in source_paths(root):
        stem = str(path.with_suffix(""))
        if not any(os.path.exists(stem + suffix) for suffix in EXTENSION_SUFFIXES):
            return f"{path.name} has no compiled module: make native"
    if source_digest(root) != stamp.DIGEST:
        return "a compiled module's source changed since the build: make native"
    return None


def select(env: Mapping[str, str] = os.environ) -> str:
    """Decide, before any of them is imported, whether the COMPILED modules run compiled;
    when not, their sources are imported (PureFinder). Returns ``BUILD``."""
    global BUILD
    root = Path(__file__).parent.parent
    why = f"{ENV}=1" if pure_requested(env) else why_pure(root)
    if why is None:
        stamp = importlib.import_module(STAMP)
        BUILD = f"compiled with {stamp.DETAIL}"
    else:
        if not any(isinstance(f, PureFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, PureFinder())
        BUILD = f"pure Python ({why})"
    return BUILD
