"""Redis backend (redis-py, imported only when a redis:// db_url is used).

Layout per table ``T`` (all keys start with the db_url prefix):

* ``T:r:<key>``            hash: the row (a None field is absent)
* ``T:all``                set: every key
* ``T:i:<field>:<value>``  set: keys whose indexed field has that value
* ``T:z:<field>``          sorted set: key scored by an ordered (numeric) field
* ``ksr_version``          hash: table name -> schema version

A row and its index entries change together in one server-side Lua script (``_PUT``,
``_DELETE``): one round trip, and atomic (Redis runs a script alone and persists its effects
whole), so a crash of ksr or a concurrent writer never leaves an index pointing at a wrong row.
The scripts build index key names themselves, so they assume one Redis server (not a cluster).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from ksr.suspend.backend import Backend, Limits, Slot
from ksr.suspend.locks import KeyedLock

from .base import (
    DbError,
    DbUnavailable,
    Row,
    SchemaMismatch,
    TableSpec,
    Value,
    check_fields,
    coerce,
)
from .redis_connect import connect

log = logging.getLogger("ksr.db")
T = TypeVar("T")

# ARGV of _PUT and _DELETE: table name, row key, the indexed fields (count, then names), the
# ordered fields (count, then names), then (_PUT only) field, value, field, value... of the new
# row, None fields left out. The old row's indexed values are read inside the script.
_PRELUDE = """
local name, key = ARGV[1], ARGV[2]
local rk = name .. ':r:' .. key
local nidx = tonumber(ARGV[3])
local nord = tonumber(ARGV[4 + nidx])
local new = {}
for i = 5 + nidx + nord, #ARGV, 2 do new[ARGV[i]] = ARGV[i + 1] end
for i = 4, 3 + nidx do
  local f = ARGV[i]
  local ov, nv = redis.call('HGET', rk, f), new[f]
  if ov and ov ~= nv then redis.call('SREM', name .. ':i:' .. f .. ':' .. ov, key) end
  if nv then redis.call('SADD', name .. ':i:' .. f .. ':' .. nv, key) end
end
for i = 5 + nidx, 4 + nidx + nord do
  local f = ARGV[i]
  local zk = name .. ':z:' .. f
  if new[f] then redis.call('ZADD', zk, new[f], key) else redis.call('ZREM', zk, key) end
end
redis.call('DEL', rk)
"""
_PUT = (
    _PRELUDE
    + """
redis.call('HSET', rk, unpack(ARGV, 5 + nidx + nord))
redis.call('SADD', name .. ':all', key)
return 1
"""
)
# returns 1 if this call removed the row
_DELETE = (
    _PRELUDE
    + """
return redis.call('SREM', name .. ':all', key)
"""
)
# ARGV: an index set's key, the row key prefix. The rows (flat field/value lists; [] for a key
# whose row is gone) of the set's members, in key order.
_ROWS_OF_SET = """
local keys = redis.call('SMEMBERS', ARGV[1])
table.sort(keys)
local out = {}
for i, k in ipairs(keys) do out[i] = redis.call('HGETALL', ARGV[2] .. k) end
return out
"""
_BATCH = 500  # rows fetched per pipelined round trip when reading many


class RedisStore:
    layout = "ksr"  # Redis keeps ksr's key layout (Kamailio's tables are SQL tables)

    def __init__(self, url: str, prefix: str = "", limits: Limits | None = None) -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self._redis_mod = redis
        limits = limits or Limits()
        # commands run on a pool of connections, a thread each (ksr/suspend/backend.py)
        self.io = Backend(
            f"redis {self.describe()}",
            limits,
            DbUnavailable,
            lambda err: isinstance(err, DbUnavailable),
            _abort,
        )
        # for pipelines (they take a connection of the pool) and for registering the scripts
        # (redis:// or redis+sentinel://, which follows the master: redis_connect.py)
        self.r = connect(url, limits.timeout, max_connections=2 * limits.pool + 4)
        self._tables: dict[str, RedisTable] = {}
        self._creating = KeyedLock()
        # EVALSHA, loading the script on the first call and again after a Redis restart
        self.put_script = self.r.register_script(_PUT)
        self.delete_script = self.r.register_script(_DELETE)
        self.rows_of_set_script = self.r.register_script(_ROWS_OF_SET)

    def _client(self, slot: Slot) -> Any:
        """The thread's client, keeping one connection: taking a connection from redis-py's
        pool for every command costs a poll() and bookkeeping. Made on first use."""
        if slot.conn is None:
            slot.conn = self._redis_mod.Redis(
                connection_pool=self.r.connection_pool, single_connection_client=True
            )
        return slot.conn

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)`` (one redis-py call) on a pool thread's connection: in a route
        that may suspend the route waits, elsewhere the caller blocks (at most the query
        timeout). Connection trouble becomes DbUnavailable (redis-py reconnects on the next
        call), anything else DbError."""
        return self.io.run(lambda slot: self._call(slot, fn))

    def _call(self, slot: Slot, fn: Callable[[Any], T]) -> T:
        errs = self._redis_mod.exceptions
        for attempt in (1, 2):
            try:
                return fn(self._client(slot))
            except (errs.ConnectionError, errs.TimeoutError) as err:
                # a new connection next time: behind Sentinel it asks where the master is now
                self._drop_client(slot)
                if attempt == 2:
                    raise DbUnavailable(f"redis {self.describe()}: {err}") from err
                log.warning("redis %s: %s, retrying", self.describe(), err)
            except errs.RedisError as err:
                raise DbError(f"redis {self.describe()}: {err}") from err
        raise AssertionError("unreachable")

    @staticmethod
    def _drop_client(slot: Slot) -> None:
        client, slot.conn = slot.conn, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken connection may fail too; it is gone anyway
                log.debug("redis: closing a failed connection", exc_info=True)

    def describe(self) -> str:
        return self.url.split("@")[-1]

    def table(self, spec: TableSpec) -> RedisTable:
        t = self._tables.get(spec.name)
        if t is None:
            if spec.layout is not None:
                raise SchemaMismatch(f"table {spec.name}: Kamailio's layout needs an SQL database")
            # routes waiting on the first use of a table: one of them sets it up
            locked = self._creating.acquire(spec.name)
            try:
                t = self._tables.get(spec.name) or self._setup(spec)
            finally:
                if locked:
                    self._creating.release(spec.name)
        return t

    def _setup(self, spec: TableSpec) -> RedisTable:
        t = RedisTable(self, spec)
        vkey = f"{self.prefix}ksr_version"
        have = self.call(lambda r: r.hget(vkey, t.name))
        have_v = int(have) if have else 0
        if have_v > spec.version:
            raise SchemaMismatch(
                f"table {t.name} has schema version {have_v}, newer than this ksr ({spec.version})"
            )
        if have_v and have_v != spec.version:
            t.reindex()  # indexes may have changed between versions
        if have_v != spec.version:
            self.call(lambda r: r.hset(vkey, t.name, spec.version))
        self._tables[spec.name] = t
        return t

    def drop(self, name: str) -> None:
        base = f"{self.prefix}{name}:"
        keys = self.call(lambda r: list(r.scan_iter(match=base + "*", count=1000)))
        for i in range(0, len(keys), 500):

            def delete(r: Any, batch: list[str] = keys[i : i + 500]) -> int:
                return int(r.delete(*batch))

            self.call(delete)
        self.call(lambda r: r.hdel(f"{self.prefix}ksr_version", self.prefix + name))
        self._tables.pop(name, None)

    def close(self) -> None:
        for slot in self.io.slots():
            client, slot.conn = slot.conn, None
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass
        try:
            self.r.close()
        except Exception:
            pass
        self.io.close()


def _abort(client: Any) -> None:
    """Shut the socket of a single-connection client down: its blocked call returns now."""
    conn = getattr(client, "connection", None)
    sock = getattr(conn, "_sock", None)
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)


class RedisTable:
    def __init__(self, store: RedisStore, spec: TableSpec) -> None:
        self.store = store
        self.spec = spec
        self.name = store.prefix + spec.name
        self._kinds = spec.kinds()

    def _rk(self, key: str) -> str:
        return f"{self.name}:r:{key}"

    def _ik(self, field: str, value: Value) -> str:
        return f"{self.name}:i:{field}:{value}"

    def _decode(self, h: dict[str, str]) -> Row:
        return {f: coerce(h.get(f), k) for f, k in self.spec.fields}

    def _script_args(self, key: str, row: Row | None) -> list[str | int | float]:
        args: list[str | int | float] = [self.name, key, len(self.spec.indexes), *self.spec.indexes]
        args += [len(self.spec.ordered), *self.spec.ordered]
        if row is not None:
            for f, v in row.items():
                if v is not None:
                    args += (f, v)
        return args

    def _raw_get(self, key: str) -> Row | None:
        h = self.store.call(lambda r: r.hgetall(self._rk(key)))
        return self._decode(h) if h else None

    def put(self, row: Row) -> None:
        new = self.spec.clean(row)
        key = new[self.spec.key]
        if key is None:
            raise DbError(f"table {self.name}: row without key {self.spec.key}")
        args = self._script_args(str(key), new)
        self.store.call(lambda r: self.store.put_script(args=args, client=r))

    def get(self, key: str) -> Row | None:
        return self._raw_get(key)

    def delete(self, key: str) -> bool:
        args = self._script_args(key, None)
        return bool(self.store.call(lambda r: self.store.delete_script(args=args, client=r)))

    def _many(self, keys: list[str]) -> list[Row]:
        """The rows of ``keys`` (missing ones left out), in batches of pipelined HGETALLs."""
        out: list[Row] = []
        for i in range(0, len(keys), _BATCH):
            batch = keys[i : i + _BATCH]

            def run(r: Any, batch: list[str] = batch) -> list[dict[str, str]]:
                pipe = r.pipeline(transaction=False)
                for k in batch:
                    pipe.hgetall(self._rk(k))
                return list(pipe.execute())

            out += [self._decode(h) for h in self.store.call(run) if h]
        return out

    def find(self, field: str, value: Value) -> list[Row]:
        check_fields(self.spec, [field])
        if field == self.spec.key:
            row = self.get(str(value))
            return [row] if row else []
        if field not in self.spec.indexes:
            return [r for r in self.all() if r.get(field) == value]
        # one round trip: the index set and its rows, read by a script
        args = (self._ik(field, value), f"{self.name}:r:")
        flat = self.store.call(lambda r: self.store.rows_of_set_script(args=args, client=r))
        return [self._decode(dict(zip(h[::2], h[1::2], strict=True))) for h in flat if h]

    def find_below(self, field: str, limit: float) -> list[Row]:
        check_fields(self.spec, [field])
        if field not in self.spec.ordered:
            return [r for r in self.all() if (v := r.get(field)) is not None and float(v) < limit]
        zk = f"{self.name}:z:{field}"
        keys = self.store.call(lambda r: r.zrangebyscore(zk, "-inf", f"({limit}"))
        return self._many(list(keys))

    def delete_where(self, field: str, value: Value) -> int:
        return sum(1 for r in self.find(field, value) if self.delete(str(r[self.spec.key])))

    def all(self) -> list[Row]:
        return self._many(sorted(self.store.call(lambda r: r.smembers(f"{self.name}:all"))))

    def count(self) -> int:
        return int(self.store.call(lambda r: r.scard(f"{self.name}:all")))

    def clear(self) -> int:
        return sum(1 for r in self.all() if self.delete(str(r[self.spec.key])))

    def reindex(self) -> None:
        for row in self.all():
            self.put(row)
