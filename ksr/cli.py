"""The ``ksr`` command line: run, check, rpc (the contract other tools rely on)."""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, native
from .core import logsetup
from .core.config import DEFAULT_SCRIPT, Config, ConfigError, CoreParams, load_config
from .core.loglevels import python_level
from .kemi.engine import ScriptError

if TYPE_CHECKING:
    from .core.server import Server

log = logging.getLogger("ksr")


def setup_logging(debug: int, core: CoreParams | None = None, stderr: bool = False) -> str:
    """Logging as core.debug/log_stderror/log_facility/log_name say (ksr/core/logsetup.py);
    ``stderr``: ``ksr run -E``, stderr whatever the configuration says (as Kamailio's -E)."""
    core = core or CoreParams()
    return logsetup.setup_logging(
        python_level(debug), core.log_stderror or stderr, core.log_facility, core.log_name
    )


def _build_server(args: argparse.Namespace) -> tuple[Config, Server]:
    from .core.server import Server

    cfg = load_config(args.config)
    if getattr(args, "listen", None):
        cfg.core.listen = list(args.listen)
    script = (
        Path(args.script) if getattr(args, "script", None) else cfg.script_path() or DEFAULT_SCRIPT
    )
    return cfg, Server(cfg, script)


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(f"ksr: {err}", file=sys.stderr)
        return 2
    setup_logging(
        args.debug if args.debug is not None else cfg.core.debug, cfg.core, args.log_stderr
    )
    try:
        cfg, server = _build_server(args)
        server.load_script()
        if cfg.cluster.redis_url:
            from .core.cluster import refuse_redis_cluster

            refuse_redis_cluster(cfg.cluster.redis_url, cfg.source)
    except (ConfigError, ScriptError) as err:
        print(f"ksr: {err}", file=sys.stderr)
        return 2
    children = args.children or cfg.core.children
    if children > 1:
        from .workers import run_workers

        return run_workers(args, children)
    from .workers import run_server

    return run_server(server)  # until SIGTERM/SIGINT, then a clean stop


def cmd_check(args: argparse.Namespace) -> int:
    from .core.server import Server
    from .kemi.reload import check_script

    try:
        cfg = load_config(args.config) if args.config else Config()
        server = Server(cfg, Path(args.script))
    except (ConfigError, ScriptError) as err:
        print(f"ksr check: {err}", file=sys.stderr)
        return 1
    engine, found = check_script(server, Path(args.script))
    problems = [p for p in found if p.fatal]
    warnings = [p for p in found if not p.fatal]
    for problem in found:  # every problem, each as file:line: message
        print(problem if problem.fatal else f"WARNING: {problem}", file=sys.stderr)
    if problems or engine is None:
        print(f"ksr check: {args.script}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    note = f", {len(warnings)} warning(s)" if warnings else ""
    print(
        f"{args.script}: OK ({engine.language}, "
        f"{len(engine.used_functions())} KSR calls checked{note})"
    )
    return 0


def cmd_stubs(args: argparse.Namespace) -> int:
    from .kemi.stubs import main as stubs_main

    return stubs_main(["--check"] if args.check else [])


def cmd_rpc(args: argparse.Namespace) -> int:
    from .rpc_client import main as rpc_main

    return rpc_main(args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="ksr", description="SIP server scripted in Lua or Python (KEMI)"
    )
    p.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"ksr {__version__} (Python {platform.python_version()}, {native.BUILD})",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the server")
    r.add_argument("--config", "-f", help="TOML configuration file")
    r.add_argument("--script", "-s", help="routing script (.lua or .py); overrides the config")
    r.add_argument(
        "--listen", "-l", action="append", help="PROTO:IP:PORT, may repeat (udp:127.0.0.1:5060)"
    )
    r.add_argument("--children", "-n", type=int, help="worker processes (core.children)")
    r.add_argument("--debug", "-d", type=int, help="log level: 3 debug .. -1 errors only")
    r.add_argument(
        "-E",
        "--log-stderr",
        action="store_true",
        help="log to stderr whatever core.log_stderror says (Kamailio's -E)",
    )
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="load a script and verify every KSR call it makes exists")
    c.add_argument("script")
    c.add_argument("--config", "-f", help="configuration (decides which modules are loaded)")
    c.set_defaults(func=cmd_check)

    g = sub.add_parser(
        "stubs", help="regenerate KSR.pyi, the Lua definitions and docs/api from the registry"
    )
    g.add_argument(
        "--check", action="store_true", help="only report out-of-date files (exit 1 if any)"
    )
    g.set_defaults(func=cmd_stubs)

    q = sub.add_parser("rpc", help="send a JSON-RPC command to a running server")
    q.add_argument(
        "--socket", "-S", help="the jsonrpcs datagram socket (modparam jsonrpcs dgram_socket)"
    )
    q.add_argument("--config", "-f", help="read the socket path from this configuration")
    q.add_argument("--timeout", type=float, default=5.0)
    q.add_argument("method")
    q.add_argument(
        "params",
        nargs="*",
        help="parameters; numbers are sent as numbers, prefix s: to force a string",
    )
    q.set_defaults(func=cmd_rpc)

    from .db_cli import add_parser as add_db_parser
    from .subscriber_cli import add_parser as add_subscriber_parser

    add_subscriber_parser(sub)
    add_db_parser(sub)

    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
