"""PostgreSQL and Redis stopped mid-run and started again (throwaway servers of the test's
own, tests/services.py): REGISTERs fail fast during the outage with a SIP answer and a log line
naming the backend, OPTIONS go on, nothing acknowledged is lost, and service comes back without
restarting ksr. A route waiting on the database inside a transaction that is cancelled resumes
into the cancelled transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ksr.sip.message import Response
from tests import services
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script
from tests.suspend.dbproxy import DbProxy, address_of, url_via

LUA = """
function ksr_request_route()
  if KSR.is_ACK() then
    KSR.tm.t_check_trans()
    KSR.x.exit()
  end
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    KSR.x.exit()
  end
  if KSR.is_REGISTER() then
    KSR.registrar.save("location", 0)
    KSR.x.exit()
  end
  if KSR.is_INVITE() then
    KSR.tm.t_newtran()
    local rc = KSR.registrar.lookup("location")
    if KSR.tm.t_is_canceled() > 0 then
      KSR.log("info", "resumed into a cancelled transaction, lookup " .. rc .. "\\n")
      KSR.x.exit()
    end
    KSR.tm.t_reply(404, "Not Found " .. rc)
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(200, "Alive")
end
"""


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def server_of_our_own(request: pytest.FixtureRequest) -> Iterator[tuple[str, services.Throwaway]]:
    own = services.private_postgres() if request.param == "postgres" else services.private_redis()
    with own as (url, t):
        yield url, t


@pytest.fixture
def proxy() -> Iterator[DbProxy]:
    with DbProxy(address_of(services.pg_url())) as p:
        yield p


def _register(n: int, port: int) -> str:
    return sip_request(
        "REGISTER",
        "sip:127.0.0.1",
        port=port,
        branch=f"z9hG4bK-r{n}-{uuid.uuid4().hex[:6]}",
        call_id=f"r{n}-{uuid.uuid4().hex[:6]}",
        extra="Expires: 600",
    ).replace("<sip:ksr@127.0.0.1>", f"<sip:user{n}@127.0.0.1>")


def _config(url: str) -> object:
    return make_config(
        ["sl", "tm", "usrloc", "registrar"], {"usrloc": {"db_url": url, "db_mode": 3}}
    )


async def test_server_stopped_and_started_again(
    tmp_path: Path,
    server_of_our_own: tuple[str, services.Throwaway],
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, db = server_of_our_own
    url = f"{base}?prefix=o_&query_timeout=1&breaker_failures=2&breaker_cooldown=0.3"
    host_port = base.split("@")[-1].split("/")[0].replace("redis://", "")
    acked: list[int] = []
    caplog.set_level(logging.WARNING)
    async with running_server(_config(url), write_script(tmp_path, LUA)) as server:  # type: ignore[arg-type]
        addr = udp_addr(server)
        peer, opt = await UdpPeer().bind(), await UdpPeer().bind()
        n = 0

        async def reg() -> Response:
            nonlocal n
            n += 1
            await peer.send(_register(n, peer.port), addr)
            r = await peer.recv_reply(timeout=5.0)
            if r.status == 200:
                acked.append(n)
            return r

        try:
            with trio.fail_after(15):  # the first use creates the table
                while (await reg()).status != 200:
                    await trio.sleep(0.1)
            for _ in range(5):
                assert (await reg()).status == 200
            await trio.to_thread.run_sync(db.halt)
            caplog.clear()
            for i in range(6):  # a SIP answer for each, never a stall (recv_reply bounds it)
                r = await reg()
                assert r.status == 500, r.status
                assert r.get("Retry-After") is not None
                await opt.send(sip_request("OPTIONS", port=opt.port, branch=f"z9hG4bK-o{i}"), addr)
                assert (await opt.recv_reply(timeout=5.0)).status == 200
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert any(host_port in m for m in errors), errors  # the log names the backend
            await trio.to_thread.run_sync(db.restart)
            with trio.fail_after(15):  # back without restarting ksr
                while (await reg()).status != 200:
                    await trio.sleep(0.2)
            stored = set(server.module("usrloc").domain("location").all())  # read from the db
        finally:
            peer.close()
            opt.close()
    assert {f"user{i}" for i in acked} <= stored  # nothing acknowledged was lost
    assert len(acked) >= 7


@pytest.mark.postgres
async def test_a_route_waiting_on_the_database_resumes_into_its_cancelled_transaction(
    tmp_path: Path, proxy: DbProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    base = services.pg_url()
    prefix = "c" + uuid.uuid4().hex[:8] + "_"
    url = url_via(base, proxy.port) + f"?prefix={prefix}&query_timeout=5"
    async with running_server(_config(url), write_script(tmp_path, LUA)) as server:  # type: ignore[arg-type]
        addr = udp_addr(server)
        peer = await UdpPeer().bind()
        try:
            await peer.send(_register(1, peer.port), addr)  # creates the table
            assert (await peer.recv_reply(timeout=10.0)).status == 200
            proxy.delay = 0.5  # the lookup waits half a second
            inv = sip_request(
                "INVITE",
                "sip:user1@127.0.0.1",
                port=peer.port,
                branch="z9hG4bK-ci",
                call_id="ci",
            )
            await peer.send(inv, addr)
            assert (await peer.recv_reply()).status == 100
            with trio.fail_after(3):
                while not server.runner.suspended:
                    await trio.sleep(0.01)
            cancel = sip_request(
                "CANCEL",
                "sip:user1@127.0.0.1",
                port=peer.port,
                branch="z9hG4bK-ci",
                call_id="ci",
            )
            await peer.send(cancel, addr)
            got: dict[str, Response] = {}
            for _ in range(2):
                r = await peer.recv_reply()
                got[r.cseq.method] = r
            assert got["CANCEL"].status == 200
            assert got["INVITE"].status == 487
            to_tag = got["INVITE"].to.params.get("tag")
            ack = sip_request(
                "ACK",
                "sip:user1@127.0.0.1",
                port=peer.port,
                branch="z9hG4bK-ci",
                call_id="ci",
                to_tag=to_tag,
            )
            await peer.send(ack, addr)
            with trio.fail_after(5):
                while server.runner.suspended:
                    await trio.sleep(0.02)
            assert await peer.nothing(0.3)  # no 404 after the 487: the route saw the cancel
            assert any("resumed into a cancelled transaction" in m for m in caplog.messages)
        finally:
            peer.close()
    from tests.registrar.conftest import _cleanup

    _cleanup(base, prefix)
