"""The server: the composition root of one ksr worker.

It builds the parts from a Config and names what they offer (``server.receive``,
``server.send``, ``server.run_route``...), then ``serve()`` opens the listeners and starts the
modules. The work is done in files of its own:

- ``listen.py``: ``core.listen`` and ``core.alias``; ``myself.py``: is this address me?
- ``loader.py``: the modules of ``loadmodule``, their parameters and their init order
- ``scripts.py``: the engine for the script; runs of its routes and event callbacks
- ``pipeline.py``: receive → parse → request or reply route (shedding, bad-message replies)
- ``lookups.py``: URIs to destinations, never blocking on DNS (``resolver.py`` does the work)
- ``sending.py``: the one way out (``send``) and the socket to send from
- ``stateless.py``: replies without a transaction, stateless forwarding of requests and replies
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ksr import native
from ksr.kemi.engine import Engine
from ksr.kemi.registry import ExportRegistry
from ksr.sip.message import Message
from ksr.suspend import RouteRunner

from .cluster import Cluster
from .config import Config, ConfigError
from .context import Destination, MsgContext, SocketInfo
from .core_stats import CoreStats
from .handoff import Handoff
from .hosts import HostTable
from .latency import Latency
from .listen import parse_alias, parse_listen
from .loader import load_modules
from .lookups import Lookups
from .module import Module
from .myself import Myself
from .pipeline import Pipeline
from .pv import PvRegistry
from .ratelog import RateLimitedLog
from .replication import Replicator
from .resolver import Resolver
from .rpc import RpcRegistry
from .scripts import Scripts
from .sending import Sender
from .shared_vars import SharedVars
from .stateful import Stateful
from .stateless import Stateless
from .stats import Stats
from .timers import TimerService

log = logging.getLogger("ksr")
VERSION = "0.1.0"
__all__ = ["VERSION", "Server", "parse_listen"]


class Server:
    """Everything one ksr worker runs. Built from a Config; started with ``serve``."""

    def __init__(self, config: Config, script: Path | None = None) -> None:
        self.config = config
        # read for every message: an attribute, not a lookup through the config
        self.max_message_size = config.core.max_message_size
        self.started = time.time()
        self.stats = Stats()
        self.rpc = RpcRegistry()
        self.timers = TimerService()
        self.pv = PvRegistry()
        self.registry = ExportRegistry()
        self.script_vars: dict[str, int | str] = {}
        self.script_vars_null: dict[str, int | str | None] = {}
        self.shared_vars = SharedVars()
        self.modules: dict[str, Module] = {}
        self.db_stores: dict[str, Any] = {}  # url -> the store modules share (ksr.db.store_for)
        self.transports: dict[str, Any] = {}  # proto -> transport object
        self.local_ips: set[str] = {"127.0.0.1", "::1"}
        self.hosts = HostTable()  # IP literal / forbidden target / DNS answers, cached
        self.script_path = script or config.script_path()
        self.reply_handlers: list[Callable[[MsgContext], bool]] = []
        self.request_hooks: list[Callable[[MsgContext], bool]] = []
        # after a request route ended (at once or after waiting on I/O): Kamailio's post-script
        # callbacks (dialog forgets what an INVITE answered statelessly tracked)
        self.routed_hooks: list[Callable[[MsgContext], None]] = []
        self.stateful: Stateful | None = None  # tm sets itself here (stateful replies)
        # observers of every message received (parsed) and sent (siptrace): empty lists cost
        # one test per message
        self.receive_taps: list[Callable[[Message, str, int, SocketInfo], None]] = []
        self.send_taps: list[Callable[[Destination, bytes, SocketInfo | None], None]] = []
        self.nursery: trio.Nursery | None = None
        # request routes that wait on I/O are suspended, not the worker (docs/suspend.md)
        self.runner = RouteRunner()
        self.worker_id = 0
        self.reuse_port = False  # worker processes share the SIP ports (ksr/workers.py)
        # (ip, port) -> the UDP socket the supervisor bound for this worker (ksr/workers.py)
        self.udp_fds: dict[tuple[str, int], int] = {}
        self.handoff: Handoff | None = None  # with worker processes: messages to their owner
        # tables every worker process shares (ksr/core/replication.py); sync_shared applies
        # the other workers' writes: transports call it once per batch, before handling it
        self.shared = Replicator()
        self.shared.register("core:shv", self.shared_vars)
        self.sync_shared: Callable[[], None] | None = None
        # how long the datagram being handled waited in the receive queue (seconds; the UDP
        # transport samples the kernel's arrival time once per batch): overload shedding
        self.rx_age = 0.0
        self.shed_age = config.core.shed_queue_age
        # the secret that signs auth nonces when auth.secret is empty: the supervisor gives
        # every worker the same one, so a challenge from one validates on another
        env_secret = os.environ.get("KSR_WORKER_SECRET", "")
        self.shared_secret: bytes | None = bytes.fromhex(env_secret) if env_secret else None
        # the other nodes of a cluster: tables shared through Redis (ksr/core/cluster.py)
        self.cluster = Cluster(self)
        self.core_stats = CoreStats(self.stats)  # Kamailio's core:* counters
        self.bad_input = RateLimitedLog(log)  # lines that what peers send can cause
        self.latency = Latency(self.stats)
        self.listeners: list[SocketInfo] = []
        for spec in config.core.listen:
            try:
                self.listeners.append(parse_listen(spec))
            except ValueError as err:
                raise ConfigError(f"core.listen: {err}", config.source) from None
        self.aliases = {parse_alias(a) for a in config.core.alias}
        # next hops: IP literals and cached answers at once, DNS in tasks (never blocking)
        self.resolver = Resolver(config.core, self.hosts, {s.proto for s in self.listeners})

        # the parts, and the names the rest of ksr calls them by
        self.scripts = scripts = Scripts(self)
        self.make_engine = scripts.make_engine
        self.load_script = scripts.load_script
        self.engine_for = scripts.engine_for
        self.run_route = scripts.run_route
        self.start_route = scripts.start_route
        self.route_waiting = scripts.route_waiting
        self.run_event = scripts.run_event
        self.has_callback = scripts.has_callback
        self.faked_context = scripts.faked_context
        self.pipeline = pipeline = Pipeline(self)
        self.receive = pipeline.receive
        self.receive_here = pipeline.receive_here
        self.on_request = pipeline.on_request
        self.on_reply = pipeline.on_reply
        self.apply_received = pipeline.apply_received
        self.apply_rport = pipeline.apply_rport
        self.myself = myself = Myself(self)
        self.is_local_ip = myself.is_local_ip
        self.is_myself_addr = myself.is_myself_addr
        self.is_myself_via = myself.is_myself_via
        self.is_myself_text = myself.is_myself_text
        self.lookups = lookups = Lookups(self)
        self.resolve = lookups.resolve
        # what is known at once, answered by the compiled half itself (tm asks per branch, the
        # stateless forward per ACK): Lookups' and Resolver's own methods are two interpreted
        # frames more each time
        self.resolve_now = self.resolver.known.now
        self.resolve_now_all = self.resolver.known.now_all
        self.resolve_later = lookups.resolve_later
        self.resolve_later_all = lookups.resolve_later_all
        self.sender = sender = Sender(self)
        self.send = sender.send
        self.socket_for = sender.socket_for
        self.stateless = sl = Stateless(self)
        self.reply_destination = sl.reply_destination
        self.send_reply_stateless = sl.send_reply_stateless
        self.send_reply_any = sl.send_reply_any
        self.server_header = sl.server_header
        self.make_via = sl.make_via
        self.forward_stateless = sl.forward_stateless
        self.forward_reply_stateless = sl.forward_reply_stateless

        load_modules(self)

    @property
    def engine(self) -> Engine | None:
        """The script engine in use, the newest version (a reload swaps it): kept by the
        compiled Scripts, which reads it per route run as a field of its own."""
        return self.scripts.engine

    @engine.setter
    def engine(self, engine: Engine | None) -> None:
        self.scripts.engine = engine

    def module(self, name: str) -> Any:
        """A loaded module instance (for modules using each other's APIs), or None."""
        return self.modules.get(name)

    # -- running -------------------------------------------------------------------------------
    async def serve(self, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the listeners, start the modules, then serve until cancelled."""
        from ksr.transport.setup import open_stream_transports
        from ksr.transport.udp import UdpTransport

        if self.engine is None:
            self.load_script()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self.runner.nursery = nursery
                await nursery.start(self.timers.run)
                if self.handoff is not None:
                    await nursery.start(self.handoff.serve)
                udp = [s for s in self.listeners if s.proto == "udp"]
                if udp:
                    t = UdpTransport(self, udp, reuse_port=self.reuse_port)
                    await nursery.start(t.serve)
                    self.transports["udp"] = t
                await open_stream_transports(self, nursery)  # tcp, tls, ws, wss
                self.listeners = [s for t in self.transports.values() for s in t.sockets]
                await self.cluster.start(nursery)  # the shared tables loaded before serving
                for m in self.modules.values():
                    await m.start(nursery)
                if self.handoff is not None:
                    self.handoff.ready.set()
                if self.config.core.kemi.event_route_callback:
                    self.run_event(
                        self.config.core.kemi.event_route_callback, "core:worker-one-init"
                    )
                log.info(
                    "ksr %s (%s, pid %d) listening on %s with %s",
                    VERSION,
                    native.BUILD,
                    os.getpid(),
                    ", ".join(str(s) for s in self.listeners),
                    self.script_path,
                )
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            for m in self.modules.values():
                try:
                    m.stop()
                except Exception:
                    log.exception("module %s failed to stop", m.name)
