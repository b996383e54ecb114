"""PostgreSQL connections driven by the event loop, many statements in flight on each
(db_url ``driver=loop``, PostgreSQL's default).

Built on psycopg's libpq binding (``psycopg.pq``, the C implementation of psycopg-binary) and
its adaptation (``psycopg.adapt.Transformer``), with libpq in non-blocking pipeline mode:

* ``execute`` in a route that may suspend queues the statement (prepared once per connection)
  followed by a sync point, flushes it, and suspends the route until its results arrive. One
  reader task per connection waits on the socket with ``trio.lowlevel.wait_readable`` and hands
  each statement its results, in order. No thread, no hand-off between threads, and no
  connection held across a round trip: with a database 50 ms away, a few connections carry
  hundreds of statements at once. A sync point after each statement keeps them independent
  (each its own implicit transaction; one that fails aborts nothing else).
* Elsewhere (timers, RPC, start-up) ``execute`` blocks on ``poll()``, on a connection no
  route uses.

Either way until the call's deadline (the query timeout); then the connection is closed, every
statement waiting on it fails with ``DbUnavailable``, and the next call connects again. libpq's
connect runs non-blocking the same way (``psycopg.generators.connect``); a host given by name
is resolved by libpq, which blocks: then the connect runs in a thread.
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import itertools
import logging
import re
import select
import time
from collections.abc import Callable, Generator
from typing import Any

import trio
from psycopg import generators, pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.waiting import READY_R, READY_RW, READY_W, WAIT_R, WAIT_W, Ready

from ksr.suspend import can_suspend, wait

from .base import DbError, DbUnavailable

log = logging.getLogger("ksr.db")

_R, _W = int(WAIT_R), int(WAIT_W)
_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK, pq.ExecStatus.EMPTY_QUERY)
_SYNC = pq.ExecStatus.PIPELINE_SYNC
Rows = list[tuple[Any, ...]]


class Lost(DbUnavailable):
    """The connection broke. ``sent`` is False when it broke before the statement left, or
    while it was idle before it (a server that restarted between two calls): then the
    statement is sent again at once on a new connection, as ksr's SQL stores do."""

    def __init__(self, msg: str, sent: bool) -> None:
        super().__init__(msg)
        self.sent = sent


class _Pending:
    """A statement sent and not answered yet."""

    __slots__ = ("event", "results", "error", "abandoned", "first")

    def __init__(self, first: bool) -> None:
        self.event = trio.Event()
        self.results: list[pq.abc.PGresult] = []
        self.error: BaseException | None = None
        self.abandoned = False
        self.first = first  # sent on an idle connection


class Pipe:
    """One connection in pipeline mode."""

    def __init__(self, pgconn: pq.abc.PGconn, name: str) -> None:
        self.pgconn = pgconn
        self.name = name
        self.fileno = pgconn.socket
        self.pending: collections.deque[_Pending] = collections.deque()
        self.prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self._names = itertools.count()
        self.closed = False
        self._reading = False
        pgconn.nonblocking = 1
        pgconn.enter_pipeline_mode()

    def close(self, why: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        try:
            trio.lowlevel.notify_closing(self.fileno)  # a reader waiting on it wakes up
        except RuntimeError:
            pass  # not in a trio run (closing at exit)
        while self.pending:
            p = self.pending.popleft()
            p.error = Lost(f"{self.name}: connection lost: {why}", not p.first)
            p.event.set()
        try:
            self.pgconn.finish()
        except Exception:
            pass

    # -- one statement ---------------------------------------------------------------------------
    def execute(self, sql: str, params: tuple[Any, ...], deadline: float) -> tuple[Rows, int]:
        if self.closed or self.pgconn.status != pq.ConnStatus.OK:
            raise Lost(f"{self.name}: connection lost", False)
        tx = Transformer()
        values = tx.dump_sequence(params, [PyFormat.AUTO] * len(params))
        query = _numbered(sql)
        key = (query, tx.types or ())
        name = self.prepared.get(key)
        try:
            if name is None:
                name = self.prepared[key] = b"ksr_%d" % next(self._names)
                self.pgconn.send_prepare(name, query, param_types=tx.types)
            self.pgconn.send_query_prepared(name, values, param_formats=tx.formats)
            self.pgconn.pipeline_sync()
        except Exception as err:  # libpq refused: the connection is broken
            self.close(str(err))
            raise Lost(f"{self.name}: connection lost: {err}", False) from err
        p = _Pending(first=not self.pending)
        self.pending.append(p)
        if can_suspend():
            results = self._await(p, deadline)
        else:
            results = self._block(p, deadline)
        res = results[-1] if results else None
        if res is None or res.status not in _OK:
            if len(results) > 1 and results[0].status not in _OK:
                res = results[0]  # the PREPARE failed
            # a statement to prepare again next time (failed, or its plan went stale)
            self.prepared.pop(key, None)
            msg = res.error_message.decode(errors="replace").strip() if res else "no result"
            raise DbError(f"{self.name}: {msg}")
        rows: Rows = []
        if res.status == pq.ExecStatus.TUPLES_OK and res.ntuples:
            tx.set_pgresult(res)
            rows = tx.load_rows(0, res.ntuples, tuple)
        return rows, res.command_tuples if res.command_tuples is not None else -1

    def _await(self, p: _Pending, deadline: float) -> list[pq.abc.PGresult]:
        self._flush_async(deadline)
        if not self._reading:
            self._reading = True
            trio.lowlevel.spawn_system_task(self._reader, name=f"ksr-db-reader {self.name}")

        async def answered() -> bool:
            with trio.move_on_after(max(0.0, deadline - time.monotonic())):
                await p.event.wait()
                return True
            return False

        try:
            got = wait(answered, lambda: DbUnavailable(f"{self.name}: call interrupted"))
        except BaseException:
            p.abandoned = True  # its results are read and dropped when they come
            raise
        if not got:
            self.close("no answer in time")
            raise DbUnavailable(f"{self.name}: no answer in time")
        if p.error is not None:
            raise p.error
        return p.results

    def _flush_async(self, deadline: float) -> None:
        while self._flush():
            ok = wait(
                lambda: _ready_async(self.fileno, _W, deadline),
                lambda: DbUnavailable(f"{self.name}: call interrupted"),
            )
            if ok is None:
                self.close("cannot send in time")
                raise DbUnavailable(f"{self.name}: no answer in time")

    def _flush(self) -> bool:
        """Send what libpq holds; True when some is left (the socket is full)."""
        try:
            return self.pgconn.flush() != 0
        except Exception as err:
            self.close(str(err))
            raise Lost(f"{self.name}: connection lost: {err}", True) from err

    async def _reader(self) -> None:
        try:
            while self.pending and not self.closed:
                await trio.lowlevel.wait_readable(self.fileno)
                self._read()
        except BaseException as err:  # the run is ending, or the socket went away
            self.close(repr(err))
            if not isinstance(err, Exception):
                raise
        finally:
            self._reading = False

    def _read(self) -> None:
        """Take what arrived; hand every statement whose sync point came its results."""
        try:
            self.pgconn.consume_input()
        except Exception as err:
            self.close(str(err))
            return
        got = False  # a result since the last None (a None after none: nothing more now)
        while not self.pgconn.is_busy() and self.pending:
            res = self.pgconn.get_result()
            if res is None:
                if not got:
                    break
                got = False  # the end of one statement's results
                continue
            got = res.status != _SYNC
            if res.status == _SYNC:
                p = self.pending.popleft()
                if not p.abandoned:
                    p.event.set()
            elif res.status == pq.ExecStatus.FATAL_ERROR and self.pgconn.status != pq.ConnStatus.OK:
                self.close(res.error_message.decode(errors="replace").strip())
                return
            else:
                self.pending[0].results.append(res)
        if self.pgconn.status != pq.ConnStatus.OK:
            self.close("connection bad")

    def _block(self, p: _Pending, deadline: float) -> list[pq.abc.PGresult]:
        """Where routes cannot wait: flush and read in this thread until ``p`` is answered."""
        while not p.event.is_set() and p.error is None:
            w = self._flush()
            ready = _ready_blocking(self.fileno, _R | (_W if w else 0), deadline)
            if ready is None:
                self.close("no answer in time")
                raise DbUnavailable(f"{self.name}: no answer in time")
            if ready & READY_R:
                self._read()
            if self.closed and not p.event.is_set():
                break
        if p.error is not None:
            raise p.error
        return p.results


@functools.lru_cache(maxsize=512)
def _numbered(sql: str) -> bytes:
    """psycopg's ``%s`` placeholders as PostgreSQL's ``$1, $2, ...`` (``%%`` is ``%``)."""
    n = itertools.count(1)
    return re.sub(r"%[s%]", lambda m: "%" if m[0] == "%%" else f"${next(n)}", sql).encode()


async def _ready_async(fileno: int, s: int, deadline: float) -> Ready | None:
    with trio.move_on_after(max(0.0, deadline - time.monotonic())):
        if s == _R:
            await trio.lowlevel.wait_readable(fileno)
            return READY_R
        if s == _W:
            await trio.lowlevel.wait_writable(fileno)
            return READY_W
        got: list[Ready] = []  # both: whichever comes first
        async with trio.open_nursery() as n:

            async def one(fn: Callable[[int], Any], ready: Ready) -> None:
                await fn(fileno)
                got.append(ready)
                n.cancel_scope.cancel()

            n.start_soon(one, trio.lowlevel.wait_readable, READY_R)
            n.start_soon(one, trio.lowlevel.wait_writable, READY_W)
        return got[0] if got else None
    return None


def _ready_blocking(fileno: int, s: int, deadline: float) -> Ready | None:
    mask = (select.POLLIN if s & _R else 0) | (select.POLLOUT if s & _W else 0)
    p = select.poll()
    p.register(fileno, mask)
    left = deadline - time.monotonic()
    events = p.poll(left * 1000) if left > 0 else []
    if not events:
        return None
    ev = events[0][1]
    r = bool(ev & (select.POLLIN | select.POLLERR | select.POLLHUP))
    w = bool(ev & (select.POLLOUT | select.POLLERR | select.POLLHUP))
    return READY_RW if r and w else READY_R if r else READY_W


# -- connecting ------------------------------------------------------------------------------------
_checked_impl = False


def _check_impl() -> None:
    """Say once when psycopg runs without its C implementation (every statement costs more)."""
    global _checked_impl
    if not _checked_impl:
        _checked_impl = True
        if pq.__impl__ == "python":
            log.warning(
                "psycopg uses its pure-Python libpq wrapper: install psycopg[binary] (or "
                "psycopg[c]) for its C implementation"
            )


def connect(url: str, connect_timeout: int, deadline: float, name: str) -> Pipe:
    _check_impl()
    conninfo = make_conninfo(url, connect_timeout=connect_timeout, client_encoding="utf8")
    deadline = min(deadline, time.monotonic() + connect_timeout)
    if _resolved(conninfo):
        pgconn = _drive_conn(generators.connect(conninfo), deadline, name)
    else:
        pgconn = _connect_in_thread(conninfo, deadline, name)
    return Pipe(pgconn, name)


def _drive_conn(gen: Generator[Any, Any, Any], deadline: float, name: str) -> Any:
    """Run psycopg's connection generator (it yields ``(fileno, wait)``) to its end."""
    suspend = can_suspend()
    try:
        fileno, s = next(gen)
        while True:
            if suspend:
                ready = wait(
                    functools.partial(_ready_async, fileno, s, deadline),
                    lambda: DbUnavailable(f"{name}: call interrupted"),
                )
            else:
                ready = _ready_blocking(fileno, s, deadline)
            if ready is None:
                gen.close()
                raise DbUnavailable(f"{name}: cannot connect: no answer in time")
            fileno, s = gen.send(ready)
    except StopIteration as done:
        return done.value


def _resolved(conninfo: str) -> bool:
    """True when libpq will not look a host name up (IP addresses, unix sockets)."""
    params = conninfo_to_dict(conninfo)
    if params.get("hostaddr"):
        return True
    for host in str(params.get("host") or "").split(","):
        if host and not host.startswith("/"):
            try:
                ipaddress.ip_address(host)
            except ValueError:
                return False
    return True


def _connect_in_thread(conninfo: str, deadline: float, name: str) -> Any:
    def blocking() -> Any:
        return _drive_conn_blocking(conninfo, deadline, name)

    if not can_suspend():
        return blocking()

    async def in_thread() -> Any:
        with trio.move_on_after(max(0.0, deadline - time.monotonic())):
            return await trio.to_thread.run_sync(blocking, abandon_on_cancel=True)
        return None

    pgconn = wait(in_thread, lambda: DbUnavailable(f"{name}: call interrupted"))
    if pgconn is None:
        raise DbUnavailable(f"{name}: cannot connect: no answer in time")
    return pgconn


def _drive_conn_blocking(conninfo: str, deadline: float, name: str) -> Any:
    return _drive_conn(generators.connect(conninfo), deadline, name)
