"""Tables shared by the nodes of a cluster through Redis (the messages: cluster_codec.py).

A table shared with the other nodes (an htable with ``dmqreplicate=1``) is first a shared table
of this node's workers (ksr/core/replication.py); its ``@replicated`` writes also leave here:

* each write is queued and a sender task runs one Lua script per write on Redis (batched in a
  pipeline, in a thread): INCR the cluster's write counter, update the key's state in the
  table's Redis hash, PUBLISH ``<seq> <json>`` on the cluster channel — so the hash and the
  channel agree on one order;
* every worker of every node subscribes to the channel (a thread waits on the socket) and
  runs the writes of *other* nodes on its copy (its own node's siblings have them through the
  unix link already), without sending them on;
* a node (re)connecting subscribes first, then reads the write counter and the hashes in one
  transaction, loads them, and skips the messages that the hashes already hold.

A malformed message is logged (rate-limited) and counted (``cluster:bad_messages``); a Redis
that goes away is logged and counted, writes wait in memory (up to MAX_PENDING) and the node
reloads the tables when the connection is back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ksr.db.url import parse_db_url

from .cluster_codec import BadMessage, Write, decode, decode_item, encode
from .cluster_nodes import ClusterNodes
from .cluster_view import ClusterView
from .config import ConfigError
from .ratelog import RateLimitedLog

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("ksr.cluster")

MAX_PENDING = 100_000  # writes kept while Redis is away; older ones are dropped (counted)
BATCH = 500
RETRY = 1.0  # seconds between reconnection attempts
POLL = 0.5  # seconds a waiting thread blocks on the subscription before looking again

# KEYS: the write counter, the table's hash. ARGV: channel, message, mode (set|del|clear|add),
# field, payload (set: the item; add: [delta, new expiry or -1]).
_WRITE = """
local seq = redis.call('INCR', KEYS[1])
local mode = ARGV[3]
if mode == 'set' then redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
elseif mode == 'del' then redis.call('HDEL', KEYS[2], ARGV[4])
elseif mode == 'clear' then redis.call('DEL', KEYS[2])
elseif mode == 'add' then
  local old = redis.call('HGET', KEYS[2], ARGV[4])
  if old then
    local ok, it = pcall(cjson.decode, old)
    local d = cjson.decode(ARGV[5])
    if ok and type(it) == 'table' and type(it[1]) == 'number' then
      it[1] = it[1] + d[1]
      if d[2] >= 0 then it[2] = d[2] end
      redis.call('HSET', KEYS[2], ARGV[4], string.format('[%d,%.3f]', it[1], it[2]))
    end
  end
end
redis.call('PUBLISH', ARGV[1], seq .. ' ' .. ARGV[2])
return seq
"""
# KEYS: the write counter. ARGV: a floor. Raises the counter to the floor (a Redis that lost it).
_RAISE_SEQ = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) return tonumber(ARGV[1]) end
return n
"""
# KEYS: a table's hash; ARGV: field, value. Deletes an expired item unless it was rewritten.
_DROP_IF_SAME = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


class NodeTable(Protocol):
    """What a table offers to be shared between nodes (beyond ``@replicated`` writes)."""

    CLUSTER_IDEMPOTENT: frozenset[str]  # ops whose result depends only on their arguments

    def cluster_change(self, op: str, args: tuple[Any, ...]) -> tuple[str, str, str]:
        """(mode, key, payload) of the write just made, for the table's Redis hash."""
        ...

    def cluster_load(self, items: dict[str, Any]) -> list[str]:
        """Replace the content by the hash's items; returns the expired/unreadable keys."""
        ...

    def cluster_items(self) -> dict[str, str]:
        """The whole content as hash fields (key -> payload of a ``set``)."""
        ...


ALL = "\0all"  # in-flight key of a write to the whole table (clear)


def node_token(server: Server) -> str:
    """Names this node on the channel: the same in all its worker processes (derived from the
    secret the supervisor gives them), different between nodes."""
    secret = server.shared_secret
    tail = hashlib.sha256(secret).hexdigest()[:12] if secret else os.urandom(6).hex()
    return f"{server.config.core.server_id}-{tail}"


def refuse_redis_cluster(url: str, source: str | None = None) -> None:
    """Refuse a Redis Cluster (sharded) node: ksr's scripts change several keys of the cluster
    at once and keep one write order (docs/cluster.md). Checked by ``ksr run`` before it
    starts; a Redis that does not answer then is not checked (the node starts without it)."""
    import redis

    from ksr.db.redis_connect import connect

    r = connect(url, timeout=2.0)
    try:
        enabled = r.info("cluster").get("cluster_enabled")
    except (redis.exceptions.RedisError, OSError):
        return
    finally:
        r.close()
    if str(enabled) == "1":
        where = url.split("@")[-1]
        raise ConfigError(
            f"[cluster] redis_url {where} is a Redis Cluster node: ksr needs one Redis master "
            "(with Sentinel for failover), not a sharded Redis Cluster",
            source,
        )


class Cluster:
    def __init__(self, server: Server) -> None:
        self.server = server
        url = server.config.cluster.redis_url
        self.url = url
        self.prefix = parse_db_url(url).prefix if url else ""
        self.tables: dict[str, NodeTable] = {}
        self.node = node_token(server)
        self.pending: deque[tuple[str, str, str, str, str]] = deque()
        # (table, key) -> this node's idempotent writes sent but not back from the channel yet
        self.in_flight: dict[tuple[str, str], int] = {}
        self._wake = trio.Event()
        self.connected = False
        self.seq_loaded = 0
        self.seq_seen = 0  # the highest write counter seen: Redis lost data if it is lower
        self._r: Any = None
        self._script: Any = None
        self._drop: Any = None
        self._raise_seq: Any = None
        self._nursery: trio.Nursery | None = None
        self.ratelog = RateLimitedLog(log, interval=5.0)  # other nodes or a flapping Redis
        st = server.stats
        self.c_sent = st.counter("cluster", "writes_sent", doc="table writes sent to other nodes")
        self.c_applied = st.counter(
            "cluster", "writes_applied", doc="table writes of other nodes applied here"
        )
        self.c_bad = st.counter(
            "cluster", "bad_messages", doc="malformed or inapplicable messages from the cluster"
        )
        self.c_errors = st.counter(
            "cluster", "redis_errors", doc="failed exchanges with the cluster's Redis"
        )
        self.c_dropped = st.counter(
            "cluster", "writes_dropped", doc="writes dropped while Redis was away too long"
        )
        self.c_reseeds = st.counter(
            "cluster", "reseeds", doc="shared tables put back into a Redis that had lost them"
        )
        self.nodes = ClusterNodes(self)  # heartbeats: which nodes are alive
        server.rpc.add_object(ClusterView(self.nodes))  # cluster.nodes, cluster.dialogs...

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def key(self, name: str) -> str:
        return f"{self.prefix}ksr:cluster:{name}"

    # -- tables ------------------------------------------------------------------------------
    def share(self, name: str, table: NodeTable) -> None:
        """Share ``table`` (already a worker-shared table under ``name``) with the other nodes."""
        self.tables[name] = table
        shared = self.server.shared
        shared.outward = self._outward
        shared.export(name)

    def _outward(self, name: str, op: str, args: tuple[Any, ...]) -> None:
        """A write made here (by a route, an RPC, a timer): queue it for the other nodes."""
        table = self.tables[name]
        mode, field, payload = table.cluster_change(op, args)
        if len(self.pending) >= MAX_PENDING:
            gone = self.pending.popleft()
            self.c_dropped.inc()
            self._landed((gone[0], gone[3] if gone[2] != "clear" else ALL))
        self.pending.append((name, encode(self.node, name, op, args), mode, field, payload))
        if op in table.CLUSTER_IDEMPOTENT:
            k = (name, field if mode != "clear" else ALL)
            self.in_flight[k] = self.in_flight.get(k, 0) + 1
        self._wake.set()

    # -- running -----------------------------------------------------------------------------
    async def start(self, nursery: trio.Nursery) -> None:
        """Connect, heartbeat, load the shared tables and keep them in step (nothing without
        ``redis_url``)."""
        if not self.enabled:
            return
        from ksr.db.redis_connect import connect

        self._nursery = nursery
        self._r = connect(self.url)
        await self.nodes.start(nursery, self._r)
        if not self.tables:
            return
        self._script = self._r.register_script(_WRITE)
        self._drop = self._r.register_script(_DROP_IF_SAME)
        self._raise_seq = self._r.register_script(_RAISE_SEQ)
        first = trio.Event()
        nursery.start_soon(self._receive_loop, first)
        nursery.start_soon(self._send_loop)
        with trio.move_on_after(5):  # a Redis that is down does not stop the node starting
            await first.wait()

    async def _receive_loop(self, first: trio.Event) -> None:
        errors = self.redis_errors()
        while True:
            pubsub: Any = None
            try:
                pubsub = await trio.to_thread.run_sync(self._subscribe)
                seq, raw = await trio.to_thread.run_sync(self._read_tables)
                if seq < self.seq_seen:  # Redis came back without (all) its data
                    self.c_reseeds.inc()
                    log.warning(
                        "cluster: redis %s lost writes (counter %d, seen %d): putting this "
                        "node's shared tables back",
                        self.describe(),
                        seq,
                        self.seq_seen,
                    )
                    await trio.to_thread.run_sync(self._reseed)
                    seq, raw = await trio.to_thread.run_sync(self._read_tables)
                self._load(seq, raw)
                self.connected = True
                first.set()
                while True:
                    batch = await trio.to_thread.run_sync(
                        self._poll, pubsub, abandon_on_cancel=True
                    )
                    for data in batch:
                        self.receive(data)
            except errors as err:
                self.connected = False
                self.c_errors.inc()
                self.ratelog.warning("cluster: redis %s: %s", self.describe(), err)
                first.set()
                await trio.sleep(RETRY)
            except Exception:  # a defect must not stop the node: reconnect and reload
                self.connected = False
                self.c_errors.inc()
                log.exception("cluster: receiving from %s failed", self.describe())
                first.set()
                await trio.sleep(RETRY)
            finally:
                if pubsub is not None:
                    pubsub.close()

    def redis_errors(self) -> tuple[type[BaseException], ...]:
        import redis

        return (redis.exceptions.RedisError, OSError)

    def describe(self) -> str:
        return self.url.split("@")[-1]

    def _subscribe(self) -> Any:
        pubsub = self._r.pubsub(ignore_subscribe_messages=False)
        pubsub.subscribe(self.key("writes"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # confirmed: later writes reach us
            m = pubsub.get_message(timeout=POLL)
            if m is not None and m.get("type") == "subscribe":
                return pubsub
        pubsub.close()
        raise OSError("no subscription confirmation")

    def _read_tables(self) -> tuple[int, dict[str, dict[str, str]]]:
        pipe = self._r.pipeline(transaction=True)
        pipe.get(self.key("seq"))
        names = list(self.tables)
        for name in names:
            pipe.hgetall(self.key(f"t:{name}"))
        res = pipe.execute()
        return int(res[0] or 0), dict(zip(names, res[1:], strict=True))

    def _reseed(self) -> None:
        """Put this node's tables into Redis where a key is missing (HSETNX: what another node
        put back first stays), and raise the write counter to what this node had seen."""
        pipe = self._r.pipeline(transaction=False)
        for name, table in self.tables.items():
            for field, payload in table.cluster_items().items():
                pipe.hsetnx(self.key(f"t:{name}"), field, payload)
        self._raise_seq(keys=[self.key("seq")], args=[self.seq_seen], client=pipe)
        pipe.execute()

    def _load(self, seq: int, raw: dict[str, dict[str, str]]) -> None:
        self.seq_loaded = seq
        self.seq_seen = max(self.seq_seen, seq)
        stale: list[tuple[str, str, str]] = []
        for name, fields in raw.items():
            items: dict[str, Any] = {}
            for k, v in fields.items():
                try:
                    items[k] = decode_item(v)
                except ValueError:
                    self.c_bad.inc()
                    self.ratelog.warning("cluster: unreadable item %s in %s", k, name)
            for k in self.tables[name].cluster_load(items):
                stale.append((self.key(f"t:{name}"), k, fields[k]))
            log.info("cluster: %s loaded from redis (%d items)", name, len(items))
        if stale and self.server.shared.leader and self._nursery is not None:
            self._nursery.start_soon(self._drop_stale, stale)

    async def _drop_stale(self, stale: list[tuple[str, str, str]]) -> None:
        def run() -> None:
            pipe = self._r.pipeline(transaction=False)
            for hkey, field, value in stale:
                self._drop(keys=[hkey], args=[field, value], client=pipe)
            pipe.execute()

        try:
            await trio.to_thread.run_sync(run)
        except self.redis_errors() as err:
            self.ratelog.warning("cluster: cannot drop expired items: %s", err)

    @staticmethod
    def _poll(pubsub: Any) -> list[str]:
        out: list[str] = []
        m = pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL)
        while m is not None and len(out) < BATCH:
            if m.get("type") == "message":
                out.append(m["data"])
            m = pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
        return out

    def receive(self, data: bytes | str) -> bool:
        """Apply one message from the channel; False (logged and counted) when it is bad.
        Never raises."""
        try:
            w = decode(data)
        except BadMessage as err:
            self.c_bad.inc()
            self.ratelog.warning("cluster: bad message on the channel: %s", err)
            return False
        if w.seq <= self.seq_loaded:
            return True  # the loaded hashes hold it already
        table = self.tables.get(w.table)
        if table is None:
            self.c_bad.inc()
            self.ratelog.warning(
                "cluster: write from %s to a table not shared here: %s", w.node, w.table
            )
            return False
        self.seq_seen = max(self.seq_seen, w.seq)
        if not self._wanted(w, table):
            return True
        try:
            self.server.shared.run_op(w.table, w.op, w.args)
        except Exception as err:
            self.c_bad.inc()
            self.ratelog.warning(
                "cluster: write %s.%s from %s not applied: %r", w.table, w.op, w.node, err
            )
            return False
        self.c_applied.inc()
        return True

    def _landed(self, key: tuple[str, str]) -> int:
        """One of this node's writes to ``key`` is back (or dropped): how many are left."""
        left = self.in_flight.get(key, 0) - 1
        if left > 0:
            self.in_flight[key] = left
            return left
        self.in_flight.pop(key, None)
        return 0

    def _wanted(self, w: Write, table: NodeTable) -> bool:
        """Whether to run a write from the channel here. Idempotent writes end as the last one
        in Redis's order on every node: a node skips other nodes' writes to a key while its own
        write to it is on the way (that one comes later in the order) and runs its own again
        when the last of them comes back. Other writes (add) run where they were made and on
        the other nodes once."""
        mine = w.node == self.node
        if w.op not in table.CLUSTER_IDEMPOTENT:
            return not mine  # this node's workers have it through the unix link
        key = (w.table, str(w.args[0]) if w.op != "clear" and w.args else ALL)
        if mine:
            return self._landed(key) == 0 and (w.table, ALL) not in self.in_flight
        return key not in self.in_flight and (w.table, ALL) not in self.in_flight

    async def _send_loop(self) -> None:
        errors = self.redis_errors()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self.pending:
                batch = [self.pending.popleft() for _ in range(min(BATCH, len(self.pending)))]
                try:
                    seqs = await trio.to_thread.run_sync(self._publish, batch)
                except errors as err:
                    self.pending.extendleft(reversed(batch))  # sent again, in order
                    self.c_errors.inc()
                    self.ratelog.warning(
                        "cluster: redis %s: %s (%d writes waiting)",
                        self.describe(),
                        err,
                        len(self.pending),
                    )
                    await trio.sleep(RETRY)
                    continue
                self.c_sent.inc(len(batch))
                self.seq_seen = max([self.seq_seen, *seqs])

    def _publish(self, batch: list[tuple[str, str, str, str, str]]) -> list[int]:
        """Run the writes on Redis; their places in the cluster's order."""
        pipe = self._r.pipeline(transaction=False)
        seq_key, channel = self.key("seq"), self.key("writes")
        for name, msg, mode, field, value in batch:
            self._script(
                keys=[seq_key, self.key(f"t:{name}")],
                args=[channel, msg, mode, field, value],
                client=pipe,
            )
        return [int(n) for n in pipe.execute()]
