"""Which nodes of the cluster are alive: heartbeats through the cluster's Redis.

Every worker process of every node runs a heartbeat (every ``[cluster] heartbeat_interval``
seconds) and a watch (same interval). Times and lifetimes are Redis's, never a node's clock:

* the heartbeat is one Lua script: it reads Redis's ``TIME``, sets
  ``<prefix>ksr:cluster:alive:<server_id>`` to the node's token with a lifetime of
  ``heartbeat_timeout`` (``PX``: Redis expires it), and writes the node's record (server_id,
  addresses, host, pid, workers, start and last-heartbeat times on Redis's clock) into the hash
  ``<prefix>ksr:cluster:nodes``. A node is alive while its alive key exists; all its workers
  keep the same key, so one worker that restarts does not make the node look dead;
* the watch is one Lua script too: Redis's ``TIME``, every record, and each alive key's holder.
  A node whose alive key has gone (or is held by another incarnation) is *declared dead* once:
  the callbacks given to ``on_dead`` run in every worker of every live node, and ``claim``
  lets exactly one of them act (e.g. take the dead node's dialogs over).

Clock skew between nodes therefore changes nothing. A Redis that goes away declares nobody dead:
after the watch had no answer, deaths wait until Redis has answered for a whole timeout again
(the live nodes have heartbeated meanwhile, also when Redis came back empty or with expired
keys from its disk).

Two nodes configured with the same ``server_id`` are told apart by their token: the second one
does not take the key of a live one (logged, counted in ``cluster:node_conflicts``) unless it is
the same machine with the same addresses (the same node started again after a crash).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from .stats import ONE

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger("ksr.cluster")

# KEYS: the nodes' hash, this node's alive key, its figures' hash. ARGV: server_id, token,
# lifetime (ms), record (JSON without times), worker index, the worker's figures (JSON).
# Returns {status, started, now, holder}: 1 written, -1 the key is held by another live node
# with this server_id (nothing written).
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rec = cjson.decode(ARGV[4])
local holder = redis.call('GET', KEYS[2])
local old = redis.call('HGET', KEYS[1], ARGV[1])
local prev = nil
if old then
  local ok, r = pcall(cjson.decode, old)
  if ok and type(r) == 'table' then prev = r end
end
if holder and holder ~= ARGV[2] then
  local same = prev and prev.host == rec.host and prev.addresses ~= nil
    and cjson.encode(prev.addresses) == cjson.encode(rec.addresses)
  if not same then return {-1, '0', tostring(now), holder} end
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local started = now
if prev and prev.token == ARGV[2] and type(prev.started) == 'number' then
  started = prev.started
end
rec.started = started
rec.last = now
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
redis.call('HSET', KEYS[3], ARGV[5], string.format('%.6f ', now) .. ARGV[2] .. ' ' .. ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {1, string.format('%.6f', started), string.format('%.6f', now), ARGV[2]}
"""

# KEYS: the nodes' hash. ARGV: the alive keys' prefix, the figures' prefix. Returns {sec,
# usec, id, record, holder or '', figures (flat HGETALL), ...}.
_WATCH = """
local t = redis.call('TIME')
local out = {t[1], t[2]}
local recs = redis.call('HGETALL', KEYS[1])
for i = 1, #recs, 2 do
  out[#out + 1] = recs[i]
  out[#out + 1] = recs[i + 1]
  out[#out + 1] = redis.call('GET', ARGV[1] .. recs[i]) or ''
  out[#out + 1] = redis.call('HGETALL', ARGV[2] .. recs[i])
end
return out
"""

# What each worker publishes of its figures in its heartbeats (summed over a node's workers).
PUBLISHED = (
    ("dialog", "active_dialogs"),
    ("dialog", "early_dialogs"),
    ("tmx", "active_transactions"),
    ("core", "rcv_requests"),
    ("core", "rcv_replies"),
)

# KEYS: the nodes' hash, the node's alive key, its figures. ARGV: server_id. Removes the record
# of a node that is not alive: 1 removed, 0 alive (kept), -1 unknown.
_FORGET = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('DEL', KEYS[3])
return redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and 1 or -1
"""

# KEYS: the claim key. ARGV: token of the claimer, lifetime (ms).
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node as the last watch saw it. Times are unix seconds on Redis's clock."""

    server_id: int
    token: str  # this run of the node (changes when it is started again)
    host: str
    addresses: tuple[str, ...]  # its listeners, e.g. "udp:10.0.0.11:5060"
    pid: int
    workers: int
    started: float  # its first heartbeat of this run
    last: float  # its last heartbeat
    age: float  # seconds from its last heartbeat to the watch (Redis's clock)
    alive: bool
    # figures its workers published (PUBLISHED, "group:name"), summed over its workers
    stats: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "server_id": self.server_id,
            "token": self.token,
            "host": self.host,
            "addresses": list(self.addresses),
            "pid": self.pid,
            "workers": self.workers,
            "started": self.started,
            "last_heartbeat": self.last,
            "age": round(self.age, 3),
            "state": "alive" if self.alive else "dead",
            "stats": dict(self.stats),
        }


DeadCallback = Callable[[NodeInfo], Awaitable[None] | None]


class ClusterNodes:
    """This node's heartbeat and its view of the others (``server.cluster.nodes``)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        server = cluster.server
        self.server_id = server.config.core.server_id
        self.interval = server.config.cluster.heartbeat_interval
        self.timeout = server.config.cluster.heartbeat_timeout
        self.token = cluster.node
        self.host = socket.gethostname()
        self._nodes: dict[int, NodeInfo] = {}
        self._dead_seen: set[tuple[int, str]] = set()  # (server_id, token) declared dead here
        self._callbacks: list[DeadCallback] = []
        self._reachable_since: float | None = None  # trio time of the first answer after none
        self._redis_time = 0.0  # Redis's clock at the last watch
        self.watching = False  # a watch has been answered
        self._nursery: trio.Nursery | None = None
        self._r: Any = None
        self._beat: Any = None
        self._watch: Any = None
        self._claim: Any = None
        self._forget: Any = None
        self.watched = trio.Event()  # set after each watch (tests and waiters renew it)
        st = server.stats
        self.c_beats = st.counter("cluster", "heartbeats_sent", doc="heartbeats written")
        self.c_dead = st.counter("cluster", "nodes_declared_dead", doc="nodes seen dying")
        self.c_conflicts = st.counter(
            "cluster", "node_conflicts", doc="heartbeats refused: server_id used by another node"
        )
        self.c_errors = cluster.c_errors
        st.gauge(
            "cluster",
            "nodes_alive",
            lambda: sum(1 for n in self._nodes.values() if n.alive),
            doc="nodes of the cluster alive at the last watch",
            merge=ONE,
        )

    # -- the API -----------------------------------------------------------------------------
    def nodes(self) -> list[NodeInfo]:
        """Every node with a record in Redis (alive or dead), by server_id."""
        return [self._nodes[k] for k in sorted(self._nodes)]

    def alive_nodes(self) -> list[NodeInfo]:
        """The nodes alive at the last watch (this node included once it has heartbeated)."""
        return [n for n in self.nodes() if n.alive]

    def is_alive(self, server_id: int) -> bool:
        """Whether the node ``server_id`` was alive at the last watch (always True for this
        node; False for a node never seen)."""
        if server_id == self.server_id:
            return True
        n = self._nodes.get(server_id)
        return n is not None and n.alive

    def node(self, server_id: int) -> NodeInfo | None:
        return self._nodes.get(server_id)

    def adopts(self, server_id: int, key: str) -> bool:
        """Whether this node takes care of an item (a contact...) that node ``server_id`` made
        and can no longer care for: True when that node is known on Redis and dead, and this
        node is the one chosen for ``key`` among the nodes alive (``crc32(key)`` over their
        sorted ids), so the dead node's items are spread over the survivors, each handled
        once. False for this node's own items, for nodes never seen (e.g. other software on
        the same tables) and before the first watch."""
        if server_id == self.server_id:
            return False
        n = self._nodes.get(server_id)
        if n is None or n.alive:
            return False
        alive = [x.server_id for x in self.nodes() if x.alive]
        if self.server_id not in alive:
            return False
        return alive[zlib.crc32(key.encode()) % len(alive)] == self.server_id

    def on_dead(self, callback: DeadCallback) -> None:
        """Run ``callback(node)`` (sync or async) when a node is declared dead: once per run of
        that node, in every worker of every live node — also for a node found dead when this
        one starts. Use ``claim`` so that one of them acts."""
        self._callbacks.append(callback)

    async def claim(self, node: NodeInfo, what: str, lifetime: float = 3600.0) -> bool:
        """True in exactly one caller in the whole cluster (this node's token keeps it, also
        when asked again) for ``what`` about this run of ``node``; the claim lasts
        ``lifetime`` seconds (Redis's). False when Redis does not answer."""
        if self._r is None:
            return False
        key = self.cluster.key(f"claim:{node.server_id}:{node.token}:{what}")
        try:
            got = await trio.to_thread.run_sync(
                lambda: self._claim(keys=[key], args=[self.token, int(lifetime * 1000)])
            )
        except self.cluster.redis_errors() as err:
            self.c_errors.inc()
            log.warning("cluster: cannot claim %s of node %d: %s", what, node.server_id, err)
            return False
        return bool(got)

    async def forget(self, server_id: int) -> int:
        """Remove the record of a dead node (one that will not come back): 1 removed, 0 it is
        alive (kept), -1 unknown. Raises the Redis error when Redis does not answer."""
        keys = [
            self.cluster.key("nodes"),
            self.cluster.key(f"alive:{server_id}"),
            self.cluster.key(f"figures:{server_id}"),
        ]
        got = await trio.to_thread.run_sync(lambda: self._forget(keys=keys, args=[server_id]))
        if int(got) == 1:
            self._nodes.pop(server_id, None)
        return int(got)

    # -- running -----------------------------------------------------------------------------
    async def start(self, nursery: trio.Nursery, redis: Any) -> None:
        self._nursery = nursery
        self._r = redis
        self._beat = redis.register_script(_BEAT)
        self._watch = redis.register_script(_WATCH)
        self._claim = redis.register_script(_CLAIM)
        self._forget = redis.register_script(_FORGET)
        nursery.start_soon(self._beat_loop)
        nursery.start_soon(self._watch_loop)

    def _record(self) -> str:
        server = self.cluster.server
        workers = server.handoff.count if server.handoff is not None else 1
        return json.dumps(
            {
                "token": self.token,
                "host": self.host,
                "addresses": [str(s) for s in server.listeners],
                "pid": int(os.environ.get("KSR_SUPERVISOR_PID") or os.getpid()),
                "workers": workers,
            }
        )

    async def _beat_loop(self) -> None:
        errors = self.cluster.redis_errors()
        keys = [
            self.cluster.key("nodes"),
            self.cluster.key(f"alive:{self.server_id}"),
            self.cluster.key(f"figures:{self.server_id}"),
        ]
        lifetime = int(self.timeout * 1000)
        server = self.cluster.server
        while True:
            worker = server.handoff.index if server.handoff is not None else 0
            args = [self.server_id, self.token, lifetime, self._record(), worker, self._figures()]
            try:
                res = await trio.to_thread.run_sync(self._send_beat, keys, args)
            except errors as err:
                self.c_errors.inc()
                self.cluster.ratelog.warning(
                    "cluster: heartbeat to %s: %s", self.cluster.describe(), err
                )
            else:
                if int(res[0]) == 1:
                    self.c_beats.inc()
                else:
                    self.c_conflicts.inc()
                    self.cluster.ratelog.warning(
                        "cluster: server_id %d is used by another live node (token %s); "
                        "give every node its own core server_id",
                        self.server_id,
                        res[3],
                    )
            await trio.sleep(self.interval)

    def _figures(self) -> str:
        st = self.cluster.server.stats
        out = {}
        for group, name in PUBLISHED:
            v = st.value(group, name)
            if v is not None:
                out[f"{group}:{name}"] = v
        return json.dumps(out, separators=(",", ":"))

    def _send_beat(self, keys: list[str], args: list[Any]) -> Any:
        return self._beat(keys=keys, args=args)

    async def _watch_loop(self) -> None:
        errors = self.cluster.redis_errors()
        key = self.cluster.key("nodes")
        args = [self.cluster.key("alive:"), self.cluster.key("figures:")]
        while True:
            try:
                raw = await trio.to_thread.run_sync(lambda: self._watch(keys=[key], args=args))
            except errors as err:
                self.c_errors.inc()
                self._reachable_since = None
                self.cluster.ratelog.warning(
                    "cluster: watching nodes on %s: %s", self.cluster.describe(), err
                )
            else:
                if self._reachable_since is None:
                    self._reachable_since = trio.current_time()
                try:
                    self._apply(raw)
                except (ValueError, TypeError, KeyError, IndexError) as err:
                    # an answer of another shape (a reply meant for another command while
                    # Redis restarts, a foreign script under our name): counted, never fatal
                    self.cluster.c_bad.inc()
                    self.cluster.ratelog.warning(
                        "cluster: watching nodes on %s: unreadable answer %.80r: %r",
                        self.cluster.describe(),
                        raw,
                        err,
                    )
                else:
                    self.watching = True
            self.watched.set()
            self.watched = trio.Event()
            await trio.sleep(self.interval)

    def _apply(self, raw: list[Any]) -> None:
        """Take one watch's answer: update the view, declare the newly dead. An answer that is
        not the watch script's flat list raises before anything changes."""
        if not isinstance(raw, list) or len(raw) < 2 or (len(raw) - 2) % 4:
            raise TypeError(f"not the watch's list of 2 + 4n items: {type(raw).__name__}")
        now = int(raw[0]) + int(raw[1]) / 1_000_000
        self._redis_time = now
        seen: dict[int, NodeInfo] = {}
        for i in range(2, len(raw) - 3, 4):
            info = self._parse(raw[i], raw[i + 1], raw[i + 2], raw[i + 3], now)
            if info is not None:
                seen[info.server_id] = info
        self._nodes = seen
        assert self._reachable_since is not None
        if trio.current_time() - self._reachable_since < self.timeout:
            return  # Redis has not answered for a whole timeout yet: let the nodes heartbeat
        for info in seen.values():
            mark = (info.server_id, info.token)
            if info.alive or info.server_id == self.server_id or mark in self._dead_seen:
                continue
            self._dead_seen.add(mark)
            self.c_dead.inc()
            log.warning(
                "cluster: node %d (%s) declared dead: last heartbeat %.1f s ago",
                info.server_id,
                ", ".join(info.addresses) or info.host,
                info.age,
            )
            for cb in self._callbacks:
                self._run_callback(cb, info)

    def _parse(
        self, sid_text: str, value: str, holder: str, figures: list[str], now: float
    ) -> NodeInfo | None:
        try:
            sid = int(sid_text)
            rec = json.loads(value)
            token = str(rec["token"])
            last = float(rec["last"])
            stats = self._sum_figures(figures, token, now)
            info = NodeInfo(
                server_id=sid,
                token=token,
                host=str(rec.get("host", "")),
                addresses=tuple(str(a) for a in rec.get("addresses", [])),
                pid=int(rec.get("pid", 0)),
                workers=int(rec.get("workers", 1)),
                started=float(rec.get("started", last)),
                last=last,
                age=max(0.0, now - last),
                alive=holder == token,
                stats=stats,
            )
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            self.cluster.c_bad.inc()
            self.cluster.ratelog.warning("cluster: unreadable node record %r: %s", sid_text, err)
            return None
        return info

    def _sum_figures(self, flat: list[str], token: str, now: float) -> dict[str, int]:
        """The figures of a node's workers that belong to its current run and are fresh
        (``<time> <token> <json>`` per worker), summed."""
        out: dict[str, int] = {}
        for k in range(1, len(flat), 2):
            at, tok, text = flat[k].split(" ", 2)
            if tok != token or now - float(at) > self.timeout:
                continue  # an earlier run, or a worker gone silent
            for name, v in json.loads(text).items():
                out[str(name)] = out.get(str(name), 0) + int(v)
        return out

    def _run_callback(self, cb: DeadCallback, info: NodeInfo) -> None:
        try:
            result = cb(info)
        except Exception:
            log.exception("cluster: node-dead callback %r failed", cb)
            return
        if inspect.isawaitable(result) and self._nursery is not None:

            async def run(aw: Awaitable[None] = result) -> None:
                try:
                    await aw
                except Exception:
                    log.exception("cluster: node-dead callback %r failed", cb)

            self._nursery.start_soon(run)

    def redis_time(self) -> float:
        """Redis's clock (unix seconds) at the last watch; 0 before the first."""
        return self._redis_time
