"""Redis backend (redis-py, imported only when a redis:// db_url is used).

Layout per table ``T`` (all keys start with the db_url prefix):

* ``T:r:<key>``            hash: the row (a None field is absent)
* ``T:all``                set: every key
* ``T:i:<field>:<value>``  set: keys whose indexed field has that value
* ``T:z:<field>``          sorted set: key scored by an ordered (numeric) field
* ``ksr_version``          hash: table name -> schema version

A row and its index entries change in one MULTI/EXEC transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from .base import DbError, DbUnavailable, Row, TableSpec, Value, check_fields, coerce

log = logging.getLogger("ksr.db")


class RedisStore:
    def __init__(self, url: str, prefix: str = "", timeout: float = 3.0) -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self._redis_mod = redis
        self.r = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._tables: dict[str, RedisTable] = {}

    def call(self, fn: Any, *args: Any) -> Any:
        """Run one redis-py call; connection trouble becomes DbUnavailable (redis-py itself
        reconnects on the next call), anything else DbError."""
        errs = self._redis_mod.exceptions
        for attempt in (1, 2):
            try:
                return fn(*args)
            except (errs.ConnectionError, errs.TimeoutError) as err:
                if attempt == 2:
                    raise DbUnavailable(f"redis {self.describe()}: {err}") from err
                log.warning("redis %s: %s, retrying", self.describe(), err)
            except errs.RedisError as err:
                raise DbError(f"redis {self.describe()}: {err}") from err
        raise AssertionError("unreachable")

    def describe(self) -> str:
        return self.url.split("@")[-1]

    def table(self, spec: TableSpec) -> RedisTable:
        t = self._tables.get(spec.name)
        if t is None:
            t = RedisTable(self, spec)
            vkey = f"{self.prefix}ksr_version"
            have = self.call(self.r.hget, vkey, t.name)
            have_v = int(have) if have else 0
            if have_v > spec.version:
                raise DbError(
                    f"table {t.name} has schema version {have_v}, newer than this ksr ({spec.version})"
                )
            if have_v and have_v != spec.version:
                t.reindex()  # indexes may have changed between versions
            if have_v != spec.version:
                self.call(self.r.hset, vkey, t.name, spec.version)
            self._tables[spec.name] = t
        return t

    def drop(self, name: str) -> None:
        base = f"{self.prefix}{name}:"
        keys = list(self.call(lambda: list(self.r.scan_iter(match=base + "*", count=1000))))
        for i in range(0, len(keys), 500):
            self.call(self.r.delete, *keys[i : i + 500])
        self.call(self.r.hdel, f"{self.prefix}ksr_version", self.prefix + name)
        self._tables.pop(name, None)

    def close(self) -> None:
        try:
            self.r.close()
        except Exception:
            pass


class RedisTable:
    def __init__(self, store: RedisStore, spec: TableSpec) -> None:
        self.store = store
        self.spec = spec
        self.name = store.prefix + spec.name
        self.r = store.r
        self._kinds = spec.kinds()

    def _rk(self, key: str) -> str:
        return f"{self.name}:r:{key}"

    def _ik(self, field: str, value: Value) -> str:
        return f"{self.name}:i:{field}:{value}"

    def _decode(self, h: dict[str, str]) -> Row:
        return {f: coerce(h.get(f), k) for f, k in self.spec.fields}

    def _write(self, pipe: Any, old: Row | None, new: Row | None, key: str) -> None:
        for f in self.spec.indexes:
            ov = old.get(f) if old else None
            nv = new.get(f) if new else None
            if old is not None and (new is None or ov != nv) and ov is not None:
                pipe.srem(self._ik(f, ov), key)
            if new is not None and nv is not None:
                pipe.sadd(self._ik(f, nv), key)
        for f in self.spec.ordered:
            nv = new.get(f) if new else None
            if nv is None:
                pipe.zrem(f"{self.name}:z:{f}", key)
            else:
                pipe.zadd(f"{self.name}:z:{f}", {key: float(nv)})
        if new is None:
            pipe.delete(self._rk(key))
            pipe.srem(f"{self.name}:all", key)
        else:
            pipe.delete(self._rk(key))
            mapping = {f: v for f, v in new.items() if v is not None}
            if mapping:
                pipe.hset(self._rk(key), mapping=mapping)
            pipe.sadd(f"{self.name}:all", key)

    def _raw_get(self, key: str) -> Row | None:
        h = self.store.call(self.r.hgetall, self._rk(key))
        return self._decode(h) if h else None

    def put(self, row: Row) -> None:
        new = self.spec.clean(row)
        key = new[self.spec.key]
        if key is None:
            raise DbError(f"table {self.name}: row without key {self.spec.key}")
        old = self._raw_get(str(key))

        def run() -> None:
            pipe = self.r.pipeline(transaction=True)
            self._write(pipe, old, new, str(key))
            pipe.execute()

        self.store.call(run)

    def get(self, key: str) -> Row | None:
        return self._raw_get(key)

    def delete(self, key: str) -> bool:
        old = self._raw_get(key)
        if old is None:
            return False

        def run() -> int:
            pipe = self.r.pipeline(transaction=True)
            pipe.srem(f"{self.name}:all", key)  # first result tells whether we removed it
            self._write(pipe, old, None, key)
            return int(pipe.execute()[0])

        return bool(self.store.call(run))

    def _many(self, keys: list[str]) -> list[Row]:
        if not keys:
            return []

        def run() -> list[dict[str, str]]:
            pipe = self.r.pipeline(transaction=False)
            for k in keys:
                pipe.hgetall(self._rk(k))
            return list(pipe.execute())

        return [self._decode(h) for h in self.store.call(run) if h]

    def find(self, field: str, value: Value) -> list[Row]:
        check_fields(self.spec, [field])
        if field == self.spec.key:
            row = self.get(str(value))
            return [row] if row else []
        if field not in self.spec.indexes:
            return [r for r in self.all() if r.get(field) == value]
        return self._many(sorted(self.store.call(self.r.smembers, self._ik(field, value))))

    def find_below(self, field: str, limit: float) -> list[Row]:
        check_fields(self.spec, [field])
        if field not in self.spec.ordered:
            return [r for r in self.all() if (v := r.get(field)) is not None and float(v) < limit]
        keys = self.store.call(self.r.zrangebyscore, f"{self.name}:z:{field}", "-inf", f"({limit}")
        return self._many(list(keys))

    def delete_where(self, field: str, value: Value) -> int:
        return sum(1 for r in self.find(field, value) if self.delete(str(r[self.spec.key])))

    def all(self) -> list[Row]:
        return self._many(sorted(self.store.call(self.r.smembers, f"{self.name}:all")))

    def count(self) -> int:
        return int(self.store.call(self.r.scard, f"{self.name}:all"))

    def clear(self) -> int:
        return sum(1 for r in self.all() if self.delete(str(r[self.spec.key])))

    def reindex(self) -> None:
        for row in self.all():
            self.put(row)
