"""What a module may use of the core: ``Core``, the type of ``Module.server``.

The server (``ksr.core.server.Server``) offers more than this; modules see it through this
Protocol, so mypy rejects a module reaching for anything else. The members, by job:

- settings and registries: ``config``, ``stats`` and ``core_stats``, ``timers``, ``rpc``,
  ``pv``, ``started``, ``worker_id``, ``listeners``, ``module(name)``;
- state shared between workers and nodes: ``shared`` (``Module.share``), ``shared_vars``,
  ``script_vars``/``script_vars_null`` ($var), ``cluster``; the database stores
  (``db_stores``, through ``ksr.db.store_for``);
- the script: ``run_route``, ``start_route``, ``route_waiting``, ``run_event``, ``has_callback``, ``faked_context``, ``engine_for``,
  ``runner`` (routes that wait on I/O); for the engine modules' reload and api_list RPCs:
  ``registry``, ``script_path``, ``make_engine``;
- tasks: ``nursery`` (the server's, once it serves: work started while handling a message);
- the network: ``send``, ``socket_for``, ``make_via``, the ``resolve*`` family,
  ``reply_destination``, ``send_reply_stateless``/``send_reply_any``/``server_header``,
  ``forward_stateless``/``forward_reply_stateless``, ``apply_rport`` and the "myself"
  checks;
- hooks into the pipeline: ``request_hooks``, ``routed_hooks``, ``reply_handlers``,
  ``receive_taps``, ``send_taps``, ``stateful`` (tm: replies in a transaction,
  retransmission checks).

Still reachable, to be replaced by typed hooks (see docs/architecture.md): ``transports``
(tls/websocket/siptrace send through a transport directly), ``handoff`` (which worker
process this is: dialog, status, nathelper) and ``engine`` (the status page). A module gets
another module's API through ``Module.require``/``optional`` (ksr/core/module.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import trio

    from ksr.kemi.engine import Engine
    from ksr.kemi.registry import ExportRegistry
    from ksr.sip.message import Message
    from ksr.suspend import RouteRunner

    from .cluster import Cluster
    from .config import Config
    from .context import Destination, MsgContext, SocketInfo
    from .core_stats import CoreStats
    from .handoff import Handoff
    from .latency import Latency
    from .pv import PvRegistry
    from .replication import Replicator
    from .rpc import RpcRegistry
    from .shared_vars import SharedVars
    from .stateful import Stateful
    from .stats import Stats
    from .timers import TimerService


class Core(Protocol):
    """The core as modules see it (implemented by ``Server``)."""

    # -- settings and registries ---------------------------------------------------------------
    config: Config
    stats: Stats
    core_stats: CoreStats  # Kamailio's core:* counters (tm counts fwd_requests)
    latency: Latency
    timers: TimerService
    rpc: RpcRegistry
    pv: PvRegistry
    started: float
    worker_id: int
    listeners: list[SocketInfo]

    def module(self, name: str) -> Any: ...

    # -- shared state ---------------------------------------------------------------------------
    shared: Replicator
    shared_vars: SharedVars
    script_vars: dict[str, int | str]
    script_vars_null: dict[str, int | str | None]
    cluster: Cluster
    db_stores: dict[str, Any]  # one store per db_url, shared by the modules (ksr.db.store_for)

    # -- the script -----------------------------------------------------------------------------
    runner: RouteRunner

    def run_route(self, ctx: MsgContext, name: str, *args: Any) -> int: ...

    def start_route(
        self, ctx: MsgContext, name: str, done: Callable[[MsgContext, int], None]
    ) -> int | None: ...

    def run_event(self, name: str, evname: str, ctx: MsgContext | None = None) -> int: ...

    def has_callback(self, name: str, ctx: MsgContext | None = None) -> bool: ...

    def route_waiting(self, ctx: MsgContext) -> bool: ...

    def faked_context(self) -> MsgContext: ...

    def engine_for(self, ctx: MsgContext) -> Engine | None: ...

    registry: ExportRegistry
    script_path: Path | None

    def make_engine(self, path: Path) -> Engine: ...

    # -- tasks ----------------------------------------------------------------------------------
    nursery: trio.Nursery | None

    # -- the network ----------------------------------------------------------------------------
    def send(
        self, dest: Destination, data: bytes, sock: SocketInfo | None = None, conn_id: int = 0
    ) -> bool: ...

    def socket_for(self, proto: str, ctx: MsgContext | None = None) -> SocketInfo | None: ...

    def make_via(self, ctx: MsgContext, sock: SocketInfo, branch: str) -> str: ...

    def resolve(self, uri: str) -> Destination | None: ...

    def resolve_now(self, uri: str) -> Destination | None | str: ...

    def resolve_now_all(self, uri: str) -> list[Destination] | str: ...

    def resolve_later(self, uri: str, done: Callable[[Destination | None], None]) -> None: ...

    def resolve_later_all(self, uri: str, done: Callable[[list[Destination]], None]) -> None: ...

    def reply_destination(self, req: Message, proto: str) -> Destination: ...

    def send_reply_stateless(
        self, ctx: MsgContext, code: int, reason: str, delay: float = 0.0
    ) -> bool: ...

    def send_reply_any(self, ctx: MsgContext, code: int, reason: str) -> bool: ...

    def server_header(self) -> str | None: ...

    def forward_stateless(self, ctx: MsgContext, uri: str | None) -> bool: ...

    def forward_reply_stateless(self, ctx: MsgContext) -> bool: ...

    def apply_rport(self, ctx: MsgContext) -> None: ...

    def is_local_ip(self, ip: str) -> bool: ...

    def is_myself_addr(self, host: str, port: int | None, proto: str | None = None) -> bool: ...

    def is_myself_via(self, host: str, port: int | None) -> bool: ...

    def is_myself_text(self, text: str) -> bool: ...

    # -- hooks into the pipeline ----------------------------------------------------------------
    request_hooks: list[Callable[[MsgContext], bool]]
    routed_hooks: list[Callable[[MsgContext], None]]  # after each request route ended
    reply_handlers: list[Callable[[MsgContext], bool]]
    receive_taps: list[Callable[[Message, str, int, SocketInfo], None]]
    send_taps: list[Callable[[Destination, bytes, SocketInfo | None], None]]
    stateful: Stateful | None  # the module keeping transactions (tm) sets itself here

    # -- still reachable, to be replaced by typed hooks ----------------------------------------
    transports: dict[str, Any]
    handoff: Handoff | None
    engine: Engine | None
