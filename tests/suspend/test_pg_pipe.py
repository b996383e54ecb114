"""PostgreSQL driven by the event loop (ksr/db/pg_pipe.py): many statements in flight on one
connection, each answered with its own results, through a proxy that delays every answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trio

from ksr.db import DbError, DbUnavailable, open_store
from ksr.db.sql import SqlStore
from ksr.suspend import RouteRunner, Suspension
from tests import services
from tests.registrar.conftest import _cleanup
from tests.suspend.dbproxy import DbProxy, address_of, url_via

pytestmark = pytest.mark.postgres


@pytest.fixture
async def routes() -> AsyncIterator[Callable[[Callable[[], Any]], Any]]:
    """Run a function as a route that may suspend; await its outcome."""
    runner = RouteRunner()
    async with trio.open_nursery() as n:
        runner.nursery = n

        async def route(fn: Callable[[], Any]) -> Any:
            r = runner.call(fn, ())
            if isinstance(r, Suspension):
                r = await runner.complete(r)
            return r.result

        yield route
        n.cancel_scope.cancel()


@pytest.fixture
def proxy() -> Iterator[DbProxy]:
    with DbProxy(address_of(services.pg_url())) as p:
        yield p


def _store(proxy: DbProxy, opts: str) -> SqlStore:
    base = services.pg_url()
    s = open_store(url_via(base, proxy.port) + f"?prefix=p{uuid.uuid4().hex[:8]}_&{opts}")
    assert isinstance(s, SqlStore)
    return s


async def test_many_statements_in_flight_on_one_connection(
    routes: Callable[[Callable[[], Any]], Any], proxy: DbProxy
) -> None:
    proxy.delay = 0.05
    store = _store(proxy, "max_conns=1&query_timeout=5")
    try:
        results: dict[int, Any] = {}

        async def one(i: int) -> None:
            sql = "SELECT ?::int * 2, ?::text" if i % 3 else "SELECT ?::int * 2, 'x' || ?"
            results[i] = await routes(lambda: store.execute(sql, (i, f"n{i}"), fetch=True))

        async with trio.open_nursery() as n:
            for i in range(60):
                n.start_soon(one, i)
        for i in range(60):
            rows, _ = results[i].unwrap()
            assert rows == [(i * 2, f"n{i}" if i % 3 else f"xn{i}")]
        assert proxy.connections == 1  # sixty statements, one connection
    finally:
        store.close()


async def test_a_failing_statement_fails_alone(
    routes: Callable[[Callable[[], Any]], Any], proxy: DbProxy
) -> None:
    proxy.delay = 0.02
    store = _store(proxy, "max_conns=1&query_timeout=5")
    try:
        out: dict[int, Any] = {}

        async def one(i: int) -> None:
            sql = "SELECT 1 / ?::int" if i == 5 else "SELECT ?::int"
            out[i] = await routes(lambda: store.execute(sql, (0 if i == 5 else i,), fetch=True))

        async with trio.open_nursery() as n:
            for i in range(10):
                n.start_soon(one, i)
        with pytest.raises(DbError, match="division by zero"):
            out[5].unwrap()
        for i in (0, 1, 2, 3, 4, 6, 7, 8, 9):
            assert out[i].unwrap()[0] == [(i,)]
        assert store.io.breaker.fails == 0  # the server answered: not a backend failure
    finally:
        store.close()


async def test_an_abandoned_statement_leaves_the_next_ones_their_own_answers(
    routes: Callable[[Callable[[], Any]], Any], proxy: DbProxy
) -> None:
    """A route whose wait is cancelled (its transaction was cancelled, the server stops)
    resumes with an error; the answer of its statement, still coming, is dropped, and the
    statements sent after it on the same connection get their own."""
    proxy.delay = 0.1
    store = _store(proxy, "max_conns=1&query_timeout=5")
    try:
        got: dict[str, Any] = {}

        async def first() -> None:
            with trio.CancelScope() as cs:
                got["cancel"] = cs
                got["first"] = await routes(lambda: store.execute("SELECT 'first'", fetch=True))

        async def second() -> None:
            got["second"] = await routes(lambda: store.execute("SELECT 'second'", fetch=True))

        async with trio.open_nursery() as n:
            n.start_soon(first)
            await trio.sleep(0.02)
            n.start_soon(second)
            await trio.sleep(0.02)
            got["cancel"].cancel()
        assert "first" not in got  # its task was cancelled
        assert got["second"].unwrap()[0] == [("second",)]
        third = await routes(lambda: store.execute("SELECT 'third'", fetch=True))
        assert third.unwrap()[0] == [("third",)]
    finally:
        store.close()


@pytest.mark.parametrize("mode", ["hang", "garbage", "cut"])
async def test_a_broken_backend_fails_the_waiting_statements_fast(
    routes: Callable[[Callable[[], Any]], Any], proxy: DbProxy, mode: str
) -> None:
    store = _store(proxy, "max_conns=2&query_timeout=0.5&breaker_failures=100")
    try:
        assert (await routes(lambda: store.execute("SELECT 1", fetch=True))).unwrap()
        proxy.set_mode(mode)
        out: list[Any] = []

        async def one() -> None:
            out.append(await routes(lambda: store.execute("SELECT 2", fetch=True)))

        async with trio.open_nursery() as n:
            for _ in range(5):
                n.start_soon(one)
        for r in out:
            with pytest.raises(DbUnavailable, match=r"127\.0\.0\.1"):  # names the backend
                r.unwrap()
        proxy.set_mode("ok")
        back = await routes(lambda: store.execute("SELECT 3", fetch=True))
        assert back.unwrap()[0] == [(3,)]  # a new connection, no restart
    finally:
        store.close()


def test_calls_outside_routes_block_on_their_own_connection() -> None:
    """Start-up, timers and RPC cannot wait: they run on the loop's own connection."""
    base = services.pg_url()
    prefix = f"p{uuid.uuid4().hex[:8]}_"
    store = open_store(f"{base}?prefix={prefix}")
    assert isinstance(store, SqlStore)
    try:
        assert store.execute("SELECT ?::int + 1", (41,), fetch=True)[0] == [(42,)]
        with pytest.raises(DbError, match="syntax"):
            store.execute("SELEC 1")
        assert store.execute("SELECT 'ok'", fetch=True)[0] == [("ok",)]
    finally:
        store.close()
        _cleanup(base, prefix)
