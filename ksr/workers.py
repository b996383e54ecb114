"""Worker processes: ``ksr run -n N`` (``core.children``).

The supervisor (the process started by ``ksr run``) starts N workers, each a full ksr server
on the same SIP ports (SO_REUSEPORT), restarts a worker that dies, and passes SIGTERM/SIGINT on
for a clean stop. It binds the UDP sockets itself, one per worker, and steers each datagram to
the worker owning its call (ksr/transport/udp_group.py, steer.py). Workers are fresh interpreters (``python -m ksr.workers``).
They share the ports, a run directory holding each worker's hand-off socket (ksr/core/handoff.py:
every message goes to the worker that owns its call) and a random secret for auth nonces.
Only worker 0 serves the jsonrpcs socket. See docs/workers.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType
from typing import Any

from ksr.core import sdnotify
from ksr.transport.udp_group import UdpGroups

log = logging.getLogger("ksr.workers")

POLL = 0.2  # seconds between checks of the workers
STOP_GRACE = 5.0  # seconds a worker gets to stop before it is killed
RESTART_MIN, RESTART_MAX = 0.5, 10.0  # restart back-off for workers that keep dying


def fixed_listen(specs: list[str]) -> list[str]:
    """Replace port 0 by a free port: every worker must bind the same port. A udp and a tcp
    listener on the same address keep sharing one port number."""
    from ksr.core.listen import parse_listen
    from ksr.sip.hostport import format_hostport

    chosen: dict[str, int] = {}
    out: list[str] = []
    for spec in specs:
        info = parse_listen(spec)
        if info.port != 0:
            out.append(spec)
            continue
        port = chosen.get(info.ip) or _free_port(info.ip)
        chosen[info.ip] = port
        out.append(f"{info.proto}:{format_hostport(info.ip, port)}")
    return out


def _free_port(ip: str) -> int:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as u:
        u.bind((ip, 0))
        port = int(u.getsockname()[1])
    return port


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = RESTART_MIN
        self.restart_at = 0.0
        self.restarts = 0
        self.notify: socket.socket | None = None  # its $NOTIFY_SOCKET (READY=1, RELOADING=1...)
        self.ready = False  # sent READY=1 since it started
        self.reloading = False  # sent RELOADING=1, READY=1 still to come


class Supervisor:
    def __init__(
        self,
        args: argparse.Namespace,
        children: int,
        listen: list[str],
        debug: int | None,
        udp: UdpGroups,
    ) -> None:
        self.args = args
        self.workers = [Worker(i) for i in range(children)]
        self.listen = listen
        self.udp = udp  # the workers' UDP sockets, bound here (kept across restarts)
        self.debug = debug
        self.stopping = False
        self.hangup = False
        self.rundir = tempfile.mkdtemp(prefix="ksr-workers-")  # hand-off sockets, pid files
        self.secret = os.urandom(32).hex()  # nonces signed by one worker validate on all
        self.ready = False  # told systemd READY=1 (once every worker was ready)

    def command(self, w: Worker) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "ksr.workers",
            "--worker",
            str(w.index),
            "--workers",
            str(len(self.workers)),
            "--rundir",
            self.rundir,
        ]
        if self.args.config:
            cmd += ["--config", self.args.config]
        if getattr(self.args, "script", None):
            cmd += ["--script", self.args.script]
        if self.debug is not None:
            cmd += ["--debug", str(self.debug)]
        if getattr(self.args, "log_stderr", False):
            cmd += ["--log-stderr"]
        for spec in self.listen:
            cmd += ["--listen", spec]
        for fd, ip, port in self.udp.fds(w.index):
            cmd += ["--udp-fd", f"{fd},{ip},{port}"]
        return cmd

    def spawn(self, w: Worker) -> None:
        if w.notify is None:
            w.notify = sdnotify.bind(os.path.join(self.rundir, f"notify-{w.index}"))
        env = {
            **os.environ,
            "KSR_SUPERVISOR_PID": str(os.getpid()),
            "KSR_WORKER_SECRET": self.secret,
            # the worker's sd_notify goes to the supervisor, which speaks for all to systemd
            "NOTIFY_SOCKET": w.notify.getsockname(),
        }
        w.ready = w.reloading = False
        fds = [fd for fd, _, _ in self.udp.fds(w.index)]
        w.proc = subprocess.Popen(self.command(w), env=env, pass_fds=fds)
        w.started = time.monotonic()
        log.info("worker %d started (pid %d)", w.index, w.proc.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.hangup = True
        else:
            self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)
        for w in self.workers:
            self.spawn(w)
        log.info(
            "supervisor (pid %d) runs %d workers on %s",
            os.getpid(),
            len(self.workers),
            ", ".join(self.listen),
        )
        while not self.stopping:
            self.check()
            time.sleep(POLL)
        return self.stop()

    def check(self) -> None:
        now = time.monotonic()
        self.notifications()
        for w in self.workers:
            if w.proc is None:
                if now >= w.restart_at:
                    w.restarts += 1
                    self.spawn(w)
                continue
            rc = w.proc.poll()
            if rc is None:
                if now - w.started > 30:
                    w.backoff = RESTART_MIN  # it ran fine for a while: forget earlier crashes
                continue
            log.error(
                "worker %d (pid %d) exited with %s; restarting in %.1fs",
                w.index,
                w.proc.pid,
                rc,
                w.backoff,
            )
            w.proc = None
            if w.reloading:
                w.reloading = False
                self._reload_progress()
            w.restart_at = now + w.backoff
            w.backoff = min(w.backoff * 2, RESTART_MAX)
        # datagrams go to the workers that serve (a dead one's calls are handled by others)
        self.udp.steer({w.index for w in self.workers if w.proc is not None and w.ready})

    def notifications(self) -> None:
        """Relay the workers' sd_notify to systemd: READY=1 once all are listening,
        RELOADING=1 while any reloads its script (SIGHUP is passed on to every worker),
        READY=1 again when they are done."""
        if self.hangup:
            self.hangup = False
            for w in self.workers:
                # one still starting loads the script from disk anyway (and SIGHUP would kill it)
                if w.ready and w.proc is not None and w.proc.poll() is None:
                    w.reloading = True
                    with contextlib.suppress(ProcessLookupError):
                        w.proc.send_signal(signal.SIGHUP)
            if self.ready:
                sdnotify.reloading()
        for w in self.workers:
            for fields in sdnotify.receive(w.notify) if w.notify is not None else []:
                if fields.get("RELOADING") == "1" and not w.reloading:
                    w.reloading = True
                    if self.ready and sum(x.reloading for x in self.workers) == 1:
                        sdnotify.reloading()
                elif fields.get("READY") == "1":
                    w.ready = True
                    if w.reloading:
                        w.reloading = False
                        self._reload_progress()
        if not self.ready and all(w.ready for w in self.workers):
            self.ready = True
            log.info("all %d workers are ready", len(self.workers))
            sdnotify.ready(f"{len(self.workers)} workers listening on {', '.join(self.listen)}")

    def _reload_progress(self) -> None:
        if self.ready and not any(w.reloading for w in self.workers):
            sdnotify.ready()

    def stop(self) -> int:
        sdnotify.stopping()
        live = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for p in live:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %.0fs; killing it", p.pid, STOP_GRACE)
                p.kill()
                p.wait()
        for w in self.workers:
            if w.notify is not None:
                w.notify.close()
        self.udp.close()
        shutil.rmtree(self.rundir, ignore_errors=True)
        log.info("supervisor stopped")
        return 0


def run_workers(args: argparse.Namespace, children: int) -> int:
    """Entry from ``ksr run`` when children > 1 (the config was already checked)."""
    from ksr.core.config import load_config
    from ksr.core.listen import parse_listen

    cfg = load_config(args.config)
    specs = list(args.listen) if getattr(args, "listen", None) else list(cfg.core.listen)
    try:
        listen = fixed_listen(specs)
    except (ValueError, OSError) as err:
        print(f"ksr: core.listen: {err}", file=sys.stderr)
        return 2
    debug = args.debug if args.debug is not None else None
    try:
        udp = UdpGroups(
            [(i.ip, i.port) for i in map(parse_listen, listen) if i.proto == "udp"], children
        )
    except OSError as err:
        print(f"ksr: {err}", file=sys.stderr)
        return 1
    return Supervisor(args, children, listen, debug, udp).run()


# -- the worker side ----------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this worker if the supervisor dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_server(server: Any, label: str = "ksr") -> int:
    """Serve until SIGTERM or SIGINT, then stop cleanly (modules' stop() runs: sockets removed,
    state flushed). SIGHUP reloads the routing script. A start-up OSError (port in use, bad
    socket path) is one line, exit 1. systemd hears READY=1 / STOPPING=1 (ksr/core/sdnotify.py)."""
    import trio

    from ksr.core import sdnotify
    from ksr.core.gcpolicy import tune_for_serving
    from ksr.core.idle_wait import make_clock
    from ksr.kemi.engine import ScriptError
    from ksr.kemi.reload import reload_script

    tune_for_serving(server.config.core.gc_threshold)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            stops = (signal.SIGTERM, signal.SIGINT)
            with trio.open_signal_receiver(*stops, signal.SIGHUP) as signals:
                # only now: a reload asked for right after READY=1 must find SIGHUP handled
                sdnotify.ready("listening on " + ", ".join(str(s) for s in server.listeners))
                async for signum in signals:
                    if signum == signal.SIGHUP:  # systemctl reload: the script, checked first
                        with contextlib.suppress(ScriptError):  # logged; the old one stays
                            reload_script(server)
                        continue
                    sdnotify.stopping()
                    nursery.cancel_scope.cancel()
                    return

    try:
        trio.run(serve, clock=make_clock(server.config.core.idle_wait))
    except KeyboardInterrupt:
        return 0
    except OSError as err:
        print(f"{label}: {err}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        rest, errors = _split_os_errors(group)
        if rest:
            raise
        for e in errors:
            print(f"{label}: {e}", file=sys.stderr)
        return 1
    return 0


def _split_os_errors(group: BaseExceptionGroup[BaseException]) -> tuple[bool, list[OSError]]:
    """(anything besides OSErrors?, the OSErrors) of a nested exception group."""
    errors: list[OSError] = []
    other = False
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            o, e = _split_os_errors(exc)
            other, errors = other or o, errors + e
        elif isinstance(exc, OSError):
            errors.append(exc)
        else:
            other = True
    return other, errors


def worker_main(argv: list[str] | None = None) -> int:

    from ksr.cli import _build_server, setup_logging
    from ksr.core.config import ConfigError
    from ksr.kemi.engine import ScriptError

    p = argparse.ArgumentParser(prog="ksr-worker")
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rundir")
    p.add_argument("--config")
    p.add_argument("--script")
    p.add_argument("--listen", action="append")
    p.add_argument("--debug", type=int)
    p.add_argument("--log-stderr", action="store_true")
    p.add_argument("--udp-fd", action="append", default=[], help="FD,IP,PORT bound for us")
    args = p.parse_args(argv)
    _die_with_parent()
    sup = os.environ.get("KSR_SUPERVISOR_PID", "")
    if sup.isdigit() and os.getppid() != int(sup):
        return 1  # the supervisor died before the death signal was set
    try:
        cfg, server = _build_server(args)
        setup_logging(
            args.debug if args.debug is not None else cfg.core.debug, cfg.core, args.log_stderr
        )
        server.worker_id = args.worker
        server.reuse_port = True
        for spec in args.udp_fd:
            fd, ip, port = spec.split(",", 2)
            server.udp_fds[(ip, int(port))] = int(fd)
        if args.workers > 1 and args.rundir:
            from ksr.core.handoff import Handoff

            server.handoff = Handoff(server, args.worker, args.workers, args.rundir)
        server.load_script()
    except (ConfigError, ScriptError) as err:
        print(f"ksr worker {args.worker}: {err}", file=sys.stderr)
        return 2

    return run_server(server, f"ksr worker {args.worker}")


if __name__ == "__main__":
    sys.exit(worker_main())
