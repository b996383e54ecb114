"""The server: modules, the script, the listeners, and the receive → route → send pipeline."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ksr.core.ignored_params import warn_ignored
from ksr.kemi.core_exports import CoreExports
from ksr.kemi.engine import Engine, ScriptError
from ksr.kemi.hdr_exports import HdrExports
from ksr.kemi.pv_exports import PvExports
from ksr.kemi.registry import ExportRegistry
from ksr.sip.builders import make_reply, stateless_branch
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import format_params, split_commas
from ksr.sip.message import Header, Message, Request, Response, parse_message_untrusted
from ksr.sip.owner import VIA_MARK
from ksr.sip.received import received_fix
from ksr.sip.uri import parse_uri
from ksr.suspend import RouteRunner

from .cluster import Cluster
from .config import Config, ConfigError
from .context import Destination, MsgContext, RouteType, SocketInfo
from .core_stats import CoreStats
from .handoff import Handoff
from .hosts import HostTable
from .latency import Latency
from .module import Module
from .modules import ALWAYS_LOADED, load_module_class
from .pv import PvRegistry
from .ratelog import RateLimitedLog
from .replication import Replicator
from .resolver import ASK, Resolver
from .rpc import RpcRegistry
from .shared_vars import SharedVars
from .stats import Stats
from .timers import TimerService

log = logging.getLogger("ksr")
VERSION = "0.1.0"


def parse_listen(spec: str) -> SocketInfo:
    """``udp:127.0.0.1:5060`` (also ``udp:[::1]:5060``, ``127.0.0.1`` = udp:...:5060)."""
    s = spec.strip()
    proto = "udp"
    if ":" in s and s.split(":", 1)[0].lower() in ("udp", "tcp", "tls", "ws", "wss"):
        proto, s = s.split(":", 1)
        proto = proto.lower()
    name = ""
    if " name " in s:
        s, _, name = s.partition(" name ")
        name = name.strip().strip('"')
    adv_ip = adv_port = None
    if " advertise " in s:
        s, _, adv = s.partition(" advertise ")
        ah, _, ap = adv.strip().rpartition(":") if ":" in adv else (adv.strip(), "", "")
        adv_ip, adv_port = (ah or adv.strip()), (int(ap) if ap.isdigit() else None)
    s = s.strip()
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 5060
    elif s.count(":") == 1:
        host, _, p = s.partition(":")
        port = int(p)
    else:
        host, port = s, (5061 if proto in ("tls", "wss") else 5060)
    if not host:
        raise ValueError(f"bad listen address {spec!r}")
    return SocketInfo(proto, host, port, name, adv_ip, adv_port)


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
        self.listeners: list[SocketInfo] = []
        self.transports: dict[str, Any] = {}  # proto -> transport object
        self.aliases: set[tuple[str, int | None]] = set()
        self.local_ips: set[str] = {"127.0.0.1", "::1"}
        self.hosts = HostTable()  # IP literal / forbidden target / DNS answers, cached
        self.engine: Engine | None = None
        self.script_path = script or config.script_path()
        self.reply_handlers: list[Callable[[MsgContext], bool]] = []
        self.request_hooks: list[Callable[[MsgContext], bool]] = []
        # observers of every message received (parsed) and sent (siptrace): empty lists cost
        # one test per message
        self.receive_taps: list[Callable[[Message, str, int, SocketInfo], None]] = []
        self.send_taps: list[Callable[[Destination, bytes, SocketInfo | None], None]] = []
        self.nursery: trio.Nursery | None = None
        # request routes that wait on I/O are suspended, not the worker (docs/suspend.md)
        self.runner = RouteRunner()
        self._waiting_requests: dict[tuple[str, str, str, int | None], int] = {}
        self.worker_id = 0
        self.reuse_port = False  # worker processes share the SIP ports (ksr/workers.py)
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
        self._c_shed = self.stats.counter(
            "core",
            "shed_requests",
            doc="new INVITEs answered 503 while the receive queue was too old",
        )
        # the secret that signs auth nonces when auth.secret is empty: the supervisor gives
        # every worker the same one, so a challenge from one validates on another
        env_secret = os.environ.get("KSR_WORKER_SECRET", "")
        self.shared_secret: bytes | None = bytes.fromhex(env_secret) if env_secret else None
        # the other nodes of a cluster: tables shared through Redis (ksr/core/cluster.py)
        self.cluster = Cluster(self)
        self.core_stats = CoreStats(self.stats)
        self.bad_input = RateLimitedLog(log)  # lines that what peers send can cause
        self.latency = Latency(self.stats)
        self._c_rcv_req = self.stats.counter("core", "rcv_requests", doc="SIP requests received")
        self._c_rcv_rpl = self.stats.counter("core", "rcv_replies", doc="SIP replies received")
        self._c_fwd_req = self.stats.counter(
            "core", "fwd_requests", doc="requests forwarded statelessly"
        )
        self._c_fwd_rpl = self.stats.counter(
            "core", "fwd_replies", doc="replies forwarded statelessly"
        )
        self._c_drop_req = self.stats.counter("core", "drop_requests", doc="requests dropped")
        self._c_drop_rpl = self.stats.counter(
            "core",
            "drop_replies",
            doc="replies dropped (not for this server, or dropped by the reply route)",
        )
        self._c_err_req = self.stats.counter(
            "core", "err_requests", doc="requests answered 500 because the script failed"
        )
        self._c_err_rpl = self.stats.counter(
            "core", "err_replies", doc="replies with an unreadable Via"
        )
        self._c_bad = self.stats.counter(
            "core", "bad_msg_hdr", doc="messages that could not be parsed"
        )
        self._c_runs = self.stats.counter(
            "core", "script_runs", doc="runs of routes and event callbacks of the script"
        )
        self._c_script_err = self.stats.counter(
            "core", "script_errors", doc="route runs that failed (script error, runaway loop)"
        )
        self._c_absorbed = self.stats.counter(
            "core",
            "suspended_retransmissions",
            doc="retransmissions absorbed while the first copy's route waited on I/O",
        )
        self._c_sl_replies = self.stats.counter(
            "sl", "sent_replies", doc="replies sent statelessly"
        )
        for spec in config.core.listen:
            try:
                self.listeners.append(parse_listen(spec))
            except ValueError as err:
                raise ConfigError(f"core.listen: {err}", config.source) from None
        for a in config.core.alias:
            host, _, port = a.rpartition(":") if a.count(":") == 1 else (a, "", "")
            self.aliases.add(((host or a).lower(), int(port) if port.isdigit() else None))
        # next hops: IP literals and cached answers at once, DNS in tasks (never blocking)
        self.resolver = Resolver(config.core, self.hosts, {s.proto for s in self.listeners})
        self._load_modules()

    # -- modules -----------------------------------------------------------------------------
    def _load_modules(self) -> None:
        for core_cls in (CoreExports, PvExports, HdrExports):
            core = core_cls(self, None)
            self.modules[core_cls.name] = core
            self.registry.add_module(core, core_cls.submodule())
        wanted = list(dict.fromkeys([*self.config.loadmodule, *ALWAYS_LOADED]))
        classes: dict[str, type[Module]] = {}
        i = 0
        while i < len(wanted):
            name = wanted[i]
            try:
                cls = load_module_class(name, self.config.mpath)
            except ConfigError as err:  # point at the loadmodule line of the file
                raise self.config.error(str(err), ["loadmodule"]) from None
            if cls is not None and cls not in classes.values():  # app_python = app_python3
                classes[name] = cls
                for dep in cls.depends:
                    if dep not in wanted:
                        raise self.config.error(
                            f"module '{name}' needs module '{dep}': add \"{dep}\" to loadmodule",
                            ["loadmodule"],
                        )
            i += 1
        for name in self.config.modparam:
            if name not in classes and name not in ("app_lua", "app_python3", "app_python"):
                raise self.config.error(
                    f"[modparam.{name}] given but module '{name}' is not in loadmodule "
                    f'(loaded: {", ".join(wanted)}; add "{name}" to loadmodule or remove the table)',
                    ["modparam", name],
                )
        for name, cls in classes.items():
            params = self.config.module_params(name, cls.Params)
            warn_ignored(name, params, self.config.source)
            inst = cls(self, params)
            self.modules[cls.name] = inst
            self.registry.add_module(inst, cls.submodule())
            self.rpc.add_object(inst)
        for inst in _dependency_order(self.modules):
            inst.init()
        from .core_rpc import CoreRpc

        self.rpc.add_object(CoreRpc(self))

    def module(self, name: str) -> Any:
        """A loaded module instance (for modules using each other's APIs), or None."""
        return self.modules.get(name)

    # -- the script ----------------------------------------------------------------------------
    def make_engine(self, path: Path) -> Engine:
        if path.suffix == ".lua":
            from ksr.kemi.lua_engine import LuaEngine

            return LuaEngine(self, path, self.registry)
        if path.suffix == ".py":
            from ksr.kemi.python_engine import PythonEngine

            flat = "app_python3s" in self.config.loadmodule  # Kamailio's way to pick it
            return PythonEngine(self, path, self.registry, flat=flat)
        raise ScriptError("unknown script type (use a .lua or .py file)", str(path))

    def load_script(self, path: Path | None = None) -> Engine:
        p = path or self.script_path
        if p is None:
            raise ScriptError("no routing script given (--script FILE.lua|FILE.py)")
        engine = self.make_engine(Path(p))
        engine.load()
        engine.version = (self.engine.version + 1) if self.engine else 1
        self.engine = engine
        self.script_path = Path(p)
        return engine

    def engine_for(self, ctx: MsgContext) -> Engine | None:
        """The script version a route of this message runs in: the one its transaction
        started with (tm pins ``tx.engine``), else the newest (docs/hot-reload.md)."""
        pinned = getattr(ctx.tx, "engine", None)
        return pinned if pinned is not None else self.engine

    def run_route(self, ctx: MsgContext, name: str, *args: Any) -> int:
        eng = self.engine_for(ctx)
        if eng is None or not name or name == "none":
            return 2
        self._c_runs.inc()
        t0 = time.perf_counter()
        rc = eng.run(ctx, name, *args)
        self.latency.route_done(name, time.perf_counter() - t0)
        if rc == 0:
            self._c_script_err.inc()
        return rc

    def start_route(
        self, ctx: MsgContext, name: str, done: Callable[[MsgContext, int], None]
    ) -> int | None:
        """Run a route that may wait on I/O: its result as ``run_route``, or None when it
        was suspended; ``done(ctx, rc)`` is called when it finishes."""
        eng = self.engine_for(ctx)
        if eng is None or not name or name == "none":
            return 2
        self._c_runs.inc()
        t0 = time.perf_counter()
        rc = eng.start(ctx, name, (), self._route_resumed_done)
        if rc is None:  # waiting on I/O: the route's time is taken when it finishes
            ctx.extra["_route_run"] = (name, t0, done)
            return None
        self.latency.route_done(name, time.perf_counter() - t0)
        return rc

    def _route_resumed_done(self, ctx: MsgContext, rc: int) -> None:
        name, t0, done = ctx.extra.pop("_route_run")
        self.latency.route_done(name, time.perf_counter() - t0)
        done(ctx, rc)

    def run_event(self, name: str, evname: str, ctx: MsgContext | None = None) -> int:
        """Run an event callback ``name(evname)`` (Python: ``(self, msg, evname)``)."""
        if ctx is None:
            ctx = self.faked_context()
        ctx.route = RouteType.EVENT
        return self.run_route(ctx, name, evname)

    def faked_context(self) -> MsgContext:
        req = Request(
            "OPTIONS",
            "sip:you@kamailio.org",
            [
                Header("Via", "SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKdummy"),
                Header("From", "<sip:you@kamailio.org>;tag=faked"),
                Header("To", "<sip:you@kamailio.org>"),
                Header("Call-ID", "faked"),
                Header("CSeq", "1 OPTIONS"),
                Header("Content-Length", "0"),
            ],
        )
        ctx = MsgContext(self, req, "127.0.0.1", 9, self.listeners[0] if self.listeners else None)
        ctx.faked = True
        return ctx

    # -- receiving ---------------------------------------------------------------------------
    def receive(
        self, data: bytes, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int = 0
    ) -> None:
        """One message from the network (a datagram or a framed stream message). With worker
        processes, a message owned by another worker goes there (docs/workers.md)."""
        if self.handoff is not None and self.handoff.relay(data, src_ip, src_port, sock, conn_id):
            return
        self.receive_here(data, src_ip, src_port, sock, conn_id)

    def receive_here(
        self, data: bytes, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int = 0
    ) -> None:
        """Handle a message in this worker (received here or handed over by another worker)."""
        try:
            # a WebSocket message carries exactly one SIP message, like a datagram (RFC 7118)
            msg = parse_message_untrusted(
                data, datagram=sock.proto in ("udp", "ws", "wss"), max_size=self.max_message_size
            )
        except RemoteProtocolError as err:
            self._c_bad.inc()
            partial = getattr(err, "partial", None)
            if isinstance(partial, Request) and partial.method != "ACK":
                self._reply_to_bad(partial, err, src_ip, src_port, sock, conn_id)
            else:
                log.debug("dropped malformed message from %s:%d: %s", src_ip, src_port, err.reason)
            return
        except Exception as err:  # a parser bug: one line, not a traceback per message
            self._c_bad.inc()
            self.bad_input.warning(
                "parser failed on a message from %s:%d: %s: %s",
                src_ip,
                src_port,
                type(err).__name__,
                err,
            )
            return
        if self.receive_taps:
            for tap in self.receive_taps:
                tap(msg, src_ip, src_port, sock)
        if isinstance(msg, Request):
            self.core_stats.on_request(msg)
            self.on_request(msg, src_ip, src_port, sock, conn_id)
        else:
            self.core_stats.on_reply(msg)
            self.on_reply(msg, src_ip, src_port, sock, conn_id)

    def _reply_to_bad(
        self,
        req: Request,
        err: RemoteProtocolError,
        src_ip: str,
        src_port: int,
        sock: SocketInfo,
        conn_id: int,
    ) -> None:
        try:
            req.top_via  # noqa: B018 - a reply needs a readable Via
            for key in ("from", "to", "call-id", "cseq"):
                if req.get(key) is None:
                    raise RemoteProtocolError(f"missing {key}")
        except RemoteProtocolError:
            log.debug("dropped malformed request from %s:%d: %s", src_ip, src_port, err.reason)
            return
        ctx = MsgContext(self, req, src_ip, src_port, sock, conn_id)
        self.apply_received(ctx)
        self.send_reply_stateless(ctx, err.status_hint, _reason_for(err))

    def on_request(
        self, req: Request, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int
    ) -> None:
        ctx = MsgContext(self, req, src_ip, src_port, sock, conn_id)
        try:
            self.apply_received(ctx)
        except RemoteProtocolError as err:
            self._reply_to_bad(req, err, src_ip, src_port, sock, conn_id)
            return
        if self.rx_age > self.shed_age > 0 and req.method == "INVITE" and self._shed(ctx):
            return
        for hook in self.request_hooks:
            if hook(ctx):
                return
        if self._waiting_requests:
            key = _retransmission_key(req)
            if key is not None and key in self._waiting_requests:
                # its route waits on I/O: the first copy will be answered (RFC 3261 §17.2)
                self._c_absorbed.inc()
                return
        rc = self.start_route(ctx, self.config.core.kemi.request_route_callback, self._routed)
        if rc is None:
            key = _retransmission_key(req)
            if key is not None:
                self._waiting_requests[key] = self._waiting_requests.get(key, 0) + 1
                ctx.extra["_waiting_key"] = key
            return
        self._routed(ctx, rc)

    def _routed(self, ctx: MsgContext, rc: int) -> None:
        """A request route finished (at once, or after waiting on I/O)."""
        key = ctx.extra.pop("_waiting_key", None) if ctx.extra else None
        if key is not None:
            n = self._waiting_requests.get(key, 0) - 1
            if n > 0:
                self._waiting_requests[key] = n
            else:
                self._waiting_requests.pop(key, None)
        if rc == 0:
            self._c_script_err.inc()
            if ctx.method != "ACK" and not ctx.replied:
                self._c_err_req.inc()
                self.send_reply_any(ctx, 500, "Server Internal Error")
        elif rc == 2:
            log.error(
                "%s: no %s() to route requests",
                self.script_path,
                self.config.core.kemi.request_route_callback,
            )

    def _shed(self, ctx: MsgContext) -> bool:
        """Overload: answer a new INVITE 503 instead of routing it, while the receive queue is
        older than core.shed_queue_age. A retransmission of an INVITE already relayed (tm has
        its transaction) or an in-dialog one is routed as usual: the script absorbs it."""
        req = ctx.request
        try:
            if req.to_tag is not None:
                return False
        except RemoteProtocolError:
            return False
        tm = self.modules.get("tm")
        if tm is not None and hasattr(tm, "has_transaction") and tm.has_transaction(req):
            return False
        self._c_shed.inc()
        ctx.reply_lumps.append("Retry-After: 1\r\n")
        self.send_reply_stateless(ctx, 503, "Service Unavailable")
        return True

    def on_reply(
        self, rpl: Response, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int
    ) -> None:
        ctx = MsgContext(self, rpl, src_ip, src_port, sock, conn_id)
        ctx.route = RouteType.REPLY
        try:
            top = rpl.top_via  # only ours matters here: the others are parsed when needed
        except RemoteProtocolError:
            self._c_err_rpl.inc()
            return
        if not self.is_myself_via(top.host, top.port):
            self._c_drop_rpl.inc()  # RFC 3261 §18.1.2: a stray response is discarded
            return
        self.run_route(ctx, self.config.core.kemi.reply_route_callback)
        if ctx.drop:
            self._c_drop_rpl.inc()
            return
        for handler in self.reply_handlers:
            if handler(ctx):
                return
        self.forward_reply_stateless(ctx)

    def apply_received(self, ctx: MsgContext) -> None:
        """RFC 3261 §18.2.1 received= and RFC 3581 rport= for the top Via of what is sent on:
        the received request keeps its bytes (see ksr.sip.received)."""
        req = ctx.msg
        assert isinstance(req, Request)
        req.via_fix = received_fix(req, ctx.src_ip, ctx.src_port, ctx.force_rport)

    def apply_rport(self, ctx: MsgContext) -> None:
        if ctx.is_request:
            try:
                self.apply_received(ctx)
            except RemoteProtocolError:
                pass

    # -- myself -------------------------------------------------------------------------------
    def is_local_ip(self, ip: str) -> bool:
        return ip in self.local_ips or any(s.ip == ip for s in self.listeners)

    def is_myself_addr(self, host: str, port: int | None, proto: str | None = None) -> bool:
        h = host.lower().strip("[]")
        for s in self.listeners:
            if (h == s.ip or h == s.adv_ip) and (port is None or port in (s.port, s.adv_port)):
                if proto is None or proto == s.proto:
                    return True
        for ah, ap in self.aliases:
            if h == ah and (ap is None or port is None or port == ap):
                return True
        return False

    def is_myself_via(self, host: str, port: int | None) -> bool:
        return self.is_myself_addr(host, port or 5060) or self.is_myself_addr(host, port)

    def is_myself_text(self, text: str) -> bool:
        t = text.strip()
        if t.startswith("<") and t.endswith(">"):
            t = t[1:-1]
        if ":" in t and t.split(":", 1)[0].lower() in ("sip", "sips"):
            try:
                u = parse_uri(t)
            except Exception:
                return False
            port = u.port if u.port is not None else (5061 if u.scheme == "sips" else None)
            if port is None:
                return self.is_myself_addr(u.host, 5060) or any(
                    h == u.host and p is None for h, p in self.aliases
                )
            return self.is_myself_addr(u.host, port)
        return self.is_myself_addr(t, None)

    # -- sending ------------------------------------------------------------------------------
    def resolve(self, uri: str) -> Destination | None:
        """Where a SIP URI sends to, if that is known now (IP literal, cached DNS answer); None
        otherwise, and a name not known yet is looked up in the background for the next call.
        Never waits for DNS: see ``resolve_now`` and ``resolve_later``."""
        found = self.resolver.now(uri)
        if found == ASK and self.nursery is not None:
            self.nursery.start_soon(self.resolver.lookup, uri)
        return found if isinstance(found, Destination) else None

    def resolve_now(self, uri: str) -> Destination | None | str:
        """The destination of ``uri`` if known now, None if it cannot be resolved, or ``ASK``
        (``ksr.core.resolver.ASK``) when DNS must be asked (then use ``resolve_later``)."""
        return self.resolver.now(uri)

    def resolve_now_all(self, uri: str) -> list[Destination] | str:
        """``resolve_now`` with every destination in RFC 3263 order (failover targets after
        the first); an empty list if the URI cannot be resolved, or ``ASK``."""
        return self.resolver.now_all(uri)

    def resolve_later(self, uri: str, done: Callable[[Destination | None], None]) -> None:
        """Resolve ``uri`` through DNS (RFC 3263) in a task on the server nursery, then call
        ``done(destination)`` (None: unresolvable or ``dns_timeout``) on the event loop."""
        self.resolve_later_all(uri, lambda found: done(found[0] if found else None))

    def resolve_later_all(self, uri: str, done: Callable[[list[Destination]], None]) -> None:
        """``resolve_later`` with every destination in RFC 3263 order (empty: unresolvable)."""

        async def task() -> None:
            found = await self.resolver.lookup_all(uri)
            try:
                done(found)
            except Exception:
                log.exception("after resolving %s", uri)

        if self.nursery is None:
            log.error("cannot resolve %s: the server is not running", uri)
            done([])
            return
        self.nursery.start_soon(task)

    def send(
        self, dest: Destination, data: bytes, sock: SocketInfo | None = None, conn_id: int = 0
    ) -> bool:
        if self.hosts.forbidden(dest.host):
            log.warning("refusing to send to %s:%d", dest.host, dest.port)
            return False
        if not self.hosts.is_ip(dest.host):
            # every next hop is resolved before it gets here; a name here came from a message
            # (a forged Via or received=): the socket would look it up, blocking, in DNS
            self.bad_input.warning(
                "refusing to send to %s:%d: a host name where an address belongs",
                dest.host[:64],
                dest.port,
            )
            return False
        if self.send_taps:
            for tap in self.send_taps:
                tap(dest, data, sock)
        if (
            self.handoff is not None
            and dest.proto != "udp"
            and self.handoff.send_remote(dest, data, conn_id)
        ):
            return True  # over a stream connection another worker holds
        t = self.transports.get(dest.proto)
        if t is None:
            log.error("no %s listener to send to %s:%d", dest.proto, dest.host, dest.port)
            return False
        try:
            return bool(t.send(data, dest.host, dest.port, sock, conn_id))
        except OSError as err:
            log.warning("send to %s:%s:%d failed: %s", dest.proto, dest.host, dest.port, err)
            return False

    def socket_for(self, proto: str, ctx: MsgContext | None = None) -> SocketInfo | None:
        if ctx is not None and ctx.send_socket is not None and ctx.send_socket.proto == proto:
            return ctx.send_socket
        if ctx is not None and ctx.socket.proto == proto:
            return ctx.socket
        for s in self.listeners:
            if s.proto == proto:
                return s
        return None

    def reply_destination(self, req: Message, proto: str) -> Destination:
        fix = req.via_fix if isinstance(req, Request) else None
        via = fix.via if fix is not None else req.top_via
        host = via.params.get("received") or via.host
        rport = via.params.get("rport")
        port = int(rport) if rport and rport.isdigit() else (via.port or 5060)
        return Destination(via.transport.lower() if via.transport else proto, host, port)

    def send_reply_stateless(
        self, ctx: MsgContext, code: int, reason: str, delay: float = 0.0
    ) -> bool:
        """Build and send a reply to the current request without a transaction (``delay``
        seconds later when given: auth slows down repeated failures that way)."""
        req = ctx.request
        extra: list[tuple[str, str]] = []
        for text in ctx.reply_lumps:
            from .context import parse_header_block

            extra.extend((h.name, h.value) for h in parse_header_block(text))
        body, ctype = ctx.reply_body or (b"", None)
        server_hdr = None
        if self.config.core.server_signature and self.config.core.server_header:
            server_hdr = self.config.core.server_header.partition(":")[2].strip()
        try:
            rpl = make_reply(
                req,
                code,
                reason,
                extra_headers=extra,
                body=body,
                content_type=ctype,
                server_header=server_hdr,
            )
            if 300 <= code < 400 and (ctx.branches or (ctx.ruri and ctx.ruri != req.uri)):
                # the destination set: a rewritten R-URI (e.g. by lookup) and the branches
                for b in [ctx.ruri or ""] + [x.uri for x in ctx.branches]:
                    rpl.headers.insert(-1, Header("Contact", f"<{b}>"))
            dest = self.reply_destination(req, ctx.proto)
        except RemoteProtocolError as err:
            log.debug("cannot reply: %s", err.reason)
            return False
        ctx.replied = code
        self._c_sl_replies.inc()
        if code >= 200:
            self.latency.request_done(req.method, ctx.timestamp)
        dest.proto = ctx.proto  # RFC 3261 §18.2.2: answer on the transport the request came on
        if delay > 0:
            self.timers.once(delay, self.send, dest, rpl.to_bytes(), ctx.socket, ctx.conn_id)
            return True
        return self.send(dest, rpl.to_bytes(), ctx.socket, ctx.conn_id)

    def send_reply_any(self, ctx: MsgContext, code: int, reason: str) -> bool:
        """Stateful if tm has a transaction for this request, else stateless."""
        tm = self.modules.get("tm")
        if tm is not None and hasattr(tm, "reply_if_transaction"):
            done = tm.reply_if_transaction(ctx, code, reason)
            if done is not None:
                return bool(done)
        return self.send_reply_stateless(ctx, code, reason)

    def make_via(self, ctx: MsgContext, sock: SocketInfo, branch: str) -> str:
        host = ctx.advertised_address or sock.adv_ip
        port = ctx.advertised_port or str(sock.adv_port)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        params: dict[str, str | None] = {"branch": branch}
        if ctx.local_rport:
            params["rport"] = None
        if self.handoff is not None:
            params[VIA_MARK] = str(self.worker_id)  # the reply comes back to this worker
        return f"SIP/2.0/{sock.proto.upper()} {host}:{port}{format_params(params)}"

    def forward_stateless(self, ctx: MsgContext, uri: str | None) -> bool:
        """Forward the request statelessly to ``uri`` or $du/R-URI (Kamailio's forward())."""
        if not ctx.is_request:
            return self.forward_reply_stateless(ctx)
        target = uri or ctx.next_hop()
        if not target:
            return False
        found = self.resolve_now(target)
        if found is None:
            log.warning("forward: cannot resolve %s", target)
            return False
        if found == ASK:
            # sent when the name resolves; the script goes on now (the message is prepared
            # with what the script set, as it would be sent at once)
            data = self._stateless_out(ctx)
            if data is None:
                return False
            out, branch = data
            self.resolve_later(
                target, lambda d: self._forward_resolved(ctx, out, branch, target, d)
            )
            return True
        assert isinstance(found, Destination)
        data = self._stateless_out(ctx)
        if data is None:
            return False
        out, branch = data
        return self._forward_to(ctx, out, branch, found)

    def _stateless_out(self, ctx: MsgContext) -> tuple[Message, str] | None:
        out = ctx.apply_lumps()
        try:
            branch = stateless_branch(ctx.request)
        except RemoteProtocolError:
            return None
        return out, branch

    def _forward_to(self, ctx: MsgContext, out: Message, branch: str, dest: Destination) -> bool:
        sock = self.socket_for(dest.proto, ctx)
        if sock is None:
            return False
        out.headers.insert(0, Header("Via", self.make_via(ctx, sock, branch)))
        ok = self.send(dest, out.to_bytes(), sock)
        if ok:
            self._c_fwd_req.inc()
        return ok

    def _forward_resolved(
        self, ctx: MsgContext, out: Message, branch: str, target: str, dest: Destination | None
    ) -> None:
        if dest is None:
            log.warning("forward: cannot resolve %s, request dropped", target)
            self._c_drop_req.inc()
            return
        if not self._forward_to(ctx, out, branch, dest):
            log.warning("forward: sending to %s:%s:%d failed", dest.proto, dest.host, dest.port)

    def forward_reply_stateless(self, ctx: MsgContext) -> bool:
        """Remove our Via and send the reply to the next one (RFC 3261 §16.7 step 9)."""
        out = ctx.apply_lumps()
        try:
            vias = ctx.msg.vias
        except RemoteProtocolError:
            self._c_err_rpl.inc()
            return False
        if len(vias) < 2:
            self._c_drop_rpl.inc()
            return False
        for i, h in enumerate(out.headers):
            if h.key == "via":
                values = split_commas(h.value)
                if len(values) > 1:
                    out.headers[i] = Header(h.name, ", ".join(values[1:]))
                else:
                    del out.headers[i]
                break
        nxt = vias[1]
        host = nxt.params.get("received") or nxt.host
        rport = nxt.params.get("rport")
        port = int(rport) if rport and rport.isdigit() else (nxt.port or 5060)
        dest = Destination(nxt.transport.lower(), host, port)
        ok = self.send(dest, out.to_bytes())
        if ok:
            self._c_fwd_rpl.inc()
        return ok

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
                    "ksr %s (pid %d) listening on %s with %s",
                    VERSION,
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


def _retransmission_key(req: Request) -> tuple[str, str, str, int | None] | None:
    """What makes a retransmission the same request: top Via branch and sent-by, method."""
    try:
        via = req.top_via
    except RemoteProtocolError:
        return None
    return (via.branch or "", req.method, via.host, via.port)


def _reason_for(err: RemoteProtocolError) -> str:
    from ksr.sip.builders import default_reason

    if err.status_hint == 400:
        return f"Bad Request - {err.reason}"[:120]
    return default_reason(err.status_hint)


def _dependency_order(modules: dict[str, Module]) -> list[Module]:
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
