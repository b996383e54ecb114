"""Routes that wait on a database without blocking the worker: the real PostgreSQL and Redis
behind a proxy (dbproxy.py) that delays every answer, cuts, hangs or answers garbage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ksr.db import open_store, store_for
from ksr.sip.message import Response
from tests import services
from tests.registrar.conftest import _cleanup
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script
from tests.suspend.dbproxy import DbProxy, address_of, url_via

LUA = """
function ksr_request_route()
  if KSR.is_REGISTER() then
    KSR.registrar.save("location", 0)
    KSR.x.exit()
  end
  local relay = KSR.hdr.get("X-Relay")
  if relay then
    KSR.pv.sets("$du", relay)
    KSR.tm.t_relay()
    KSR.x.exit()
  end
  if KSR.is_INVITE() then
    local rc = KSR.registrar.lookup("location")
    if rc < 0 then
      KSR.sl.sl_send_reply(404, "Not Found " .. rc)
      KSR.x.exit()
    end
    KSR.sl.sl_send_reply(302, "Found")
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(200, "Alive")
end
"""

PY = """
import KSR

class R:
    def ksr_request_route(self, msg):
        if KSR.is_REGISTER():
            KSR.registrar.save("location", 0)
            return 1
        relay = KSR.hdr.get("X-Relay")
        if relay:
            KSR.pv.sets("$du", relay)
            KSR.tm.t_relay()
            return 1
        if KSR.is_INVITE():
            rc = KSR.registrar.lookup("location")
            if rc < 0:
                KSR.sl.sl_send_reply(404, "Not Found %d" % rc)
                return 1
            KSR.sl.sl_send_reply(302, "Found")
            return 1
        KSR.sl.sl_send_reply(200, "Alive")
        return 1

def mod_init():
    return R()
"""


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, DbProxy, str]]:
    """(name, a proxy in front of the shared server, a db_url through it)."""
    prefix = "t" + uuid.uuid4().hex[:10] + "_"
    base = services.pg_url() if request.param == "postgres" else services.redis_url()
    with DbProxy(address_of(base)) as proxy:
        url = url_via(base, proxy.port)
        opts = "query_timeout=1&breaker_failures=2&breaker_cooldown=0.3&max_conns=32"
        try:
            yield request.param, proxy, f"{url}?prefix={prefix}&{opts}"
        finally:
            _cleanup(base, prefix)


def register(n: int, port: int, user: str | None = None) -> str:
    user = user or f"user{n}"
    return sip_request(
        "REGISTER",
        "sip:127.0.0.1",
        port=port,
        branch=f"z9hG4bK-reg-{n}-{uuid.uuid4().hex[:6]}",
        call_id=f"reg-{n}-{uuid.uuid4().hex[:6]}",
        extra=f"Expires: 600\r\nX-N: {n}",
    ).replace("<sip:ksr@127.0.0.1>", f"<sip:{user}@127.0.0.1>")


def config(url: str) -> object:
    return make_config(
        ["sl", "tm", "usrloc", "registrar"],
        {"usrloc": {"db_url": url, "db_mode": 3}},
    )


@pytest.mark.parametrize("lang", ["lua", "py"])
async def test_options_answered_while_registers_wait_on_a_slow_db(
    tmp_path: Path, backend: tuple[str, DbProxy, str], lang: str
) -> None:
    name, proxy, url = backend
    url = url.replace("query_timeout=1", "query_timeout=3")  # a busy machine: no timeouts here
    script = write_script(
        tmp_path, LUA if lang == "lua" else PY, ".lua" if lang == "lua" else ".py"
    )
    proxy.delay = 0.05  # every answer of the database arrives 50 ms late
    async with running_server(config(url), script) as server:  # type: ignore[arg-type]
        addr = udp_addr(server)
        regs = [await UdpPeer().bind() for _ in range(20)]
        opt = await UdpPeer().bind()
        try:
            for i, p in enumerate(regs):
                await p.send(register(i, p.port), addr)
            # while the REGISTERs wait on the database, OPTIONS are answered by the same worker
            await trio.sleep(0.02)
            peak = server.runner.suspended
            await opt.send(sip_request("OPTIONS", port=opt.port, branch="z9hG4bK-o1"), addr)
            rpl = await opt.recv_reply(timeout=2.0)
            assert rpl.status == 200
            # and a call is relayed meanwhile: the callee gets the INVITE, the caller its 180
            callee, caller = await UdpPeer().bind(), await UdpPeer().bind()
            inv = sip_request(
                "INVITE",
                "sip:bob@127.0.0.1",
                port=caller.port,
                branch="z9hG4bK-relay",
                call_id="relay-1",
                extra=f"X-Relay: sip:127.0.0.1:{callee.port}",
            )
            await caller.send(inv, addr)
            got = await callee.recv(timeout=2.0)
            assert got.startswith(b"INVITE ")
            still_waiting = server.runner.suspended
            callee.close()
            caller.close()
            assert still_waiting > 0, "OPTIONS came after every REGISTER: the worker waited"
            assert peak >= 10, f"only {peak} REGISTERs were in flight at once"
            for p in regs:
                r = await p.recv_reply(timeout=5.0)
                assert r.status == 200, (r.status, r.reason)
            # every acknowledged binding is stored: a lookup finds each
            caller = await UdpPeer().bind()
            for i in range(20):
                inv = sip_request(
                    "INVITE", f"sip:user{i}@127.0.0.1", port=caller.port, branch=f"z9hG4bK-i{i}"
                )
                await caller.send(inv, addr)
                r = await caller.recv_reply(timeout=5.0)
                if r.status == 100:
                    r = await caller.recv_reply(timeout=5.0)
                assert r.status == 302, (name, i, r.status, r.reason)
        finally:
            for p in [*regs, opt]:
                p.close()


async def _register(peer: UdpPeer, addr: tuple[str, int], n: int) -> Response:
    await peer.send(register(n, peer.port), addr)
    return await peer.recv_reply(timeout=5.0)


@pytest.mark.parametrize("lang", ["lua"])
async def test_outage_fast_errors_nothing_lost_and_back_without_restart(
    tmp_path: Path, backend: tuple[str, DbProxy, str], lang: str
) -> None:
    name, proxy, url = backend
    script = write_script(tmp_path, LUA)
    acked: list[int] = []
    async with running_server(config(url), script) as server:  # type: ignore[arg-type]
        addr = udp_addr(server)
        peer = await UdpPeer().bind()
        opt = await UdpPeer().bind()
        store = store_for(server, url)
        n = 0

        async def reg() -> Response:
            nonlocal n
            n += 1
            r = await _register(peer, addr, n)
            if r.status == 200:
                acked.append(n)
            return r

        try:
            with trio.fail_after(10):  # the first use creates the table (slow on a busy machine)
                while (await reg()).status != 200:
                    await trio.sleep(0.1)
            for mode in ("cut", "hang", "garbage"):
                proxy.set_mode(mode)
                r = await reg()
                assert r.status == 500, (mode, r.status)
                assert r.get("Retry-After") is not None, mode
                # the worker answers others while the backend is down
                await opt.send(
                    sip_request("OPTIONS", port=opt.port, branch=f"z9hG4bK-{mode}"), addr
                )
                assert (await opt.recv_reply()).status == 200
                # the circuit opens: the next REGISTERs fail without waiting on the backend
                refused = store.io.refused
                for _ in range(3):
                    assert (await reg()).status == 500
                assert store.io.refused > refused, mode
                # back without a restart: after the cool-down a probe succeeds
                proxy.set_mode("ok")
                with trio.fail_after(10):
                    while (await reg()).status != 200:
                        await trio.sleep(0.1)
            # every acknowledged registration is stored (read back through usrloc's table)
            stored = set(server.module("usrloc").domain("location").all())
        finally:
            peer.close()
            opt.close()
    assert {f"user{i}" for i in acked} <= stored
    assert len(acked) >= 4


AUTH_LUA = """
function ksr_request_route()
  local rc = KSR.auth_db.auth_check(KSR.pv.get("$td"), "subscriber", 0)
  if rc == -1 then KSR.x.exit() end  -- the database failed: auth_check answered 500
  if rc < 0 then
    KSR.auth.auth_challenge(KSR.pv.get("$td"), 1)
    KSR.x.exit()
  end
  KSR.registrar.save("location", 0)
end
"""


async def test_authentication_fails_closed_while_the_database_is_down(
    tmp_path: Path, backend: tuple[str, DbProxy, str]
) -> None:
    name, proxy, url = backend
    from ksr.modules.auth_db.subscribers import Subscribers
    from tests.registrar.digest_client import authorization

    base = services.pg_url() if name == "postgres" else services.redis_url()
    direct = open_store(f"{base}?prefix={url.split('prefix=')[1].split('&')[0]}")
    Subscribers(direct).add("alice", "127.0.0.1", "secret")
    direct.close()
    cfg = make_config(
        ["sl", "usrloc", "registrar", "auth", "auth_db"],
        {"usrloc": {"db_url": url, "db_mode": 3}, "auth_db": {"db_url": url}},
    )
    async with running_server(cfg, write_script(tmp_path, AUTH_LUA)) as server:
        addr = udp_addr(server)
        peer = await UdpPeer().bind()
        try:

            async def attempt(n: int) -> Response:
                req = register(n, peer.port, "alice")
                await peer.send(req, addr)
                challenge = await peer.recv_reply(timeout=5.0)
                assert challenge.status == 401
                auth = authorization(challenge, "alice", "secret")
                await peer.send(
                    req.replace("CSeq: 1 ", "CSeq: 2 ").replace("X-N:", auth + "\r\nX-N:"), addr
                )
                return await peer.recv_reply(timeout=5.0)

            with trio.fail_after(10):
                while (await attempt(0)).status != 200:
                    await trio.sleep(0.1)
            proxy.set_mode("cut")
            for n in range(1, 5):
                r = await attempt(n)
                assert r.status == 500, r.status  # never 200 without the subscriber row
            proxy.set_mode("ok")
            with trio.fail_after(10):
                while (await attempt(9)).status != 200:
                    await trio.sleep(0.1)
        finally:
            peer.close()
