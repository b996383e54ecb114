"""KSR.http_client against a local HTTP server: Kamailio's return codes and $var results, and
routes that wait for the answer without stalling the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.core.server import Server
from ksr.sip.message import Response
from tests.support import (
    UdpPeer,
    free_port,
    make_config,
    running_server,
    sip_request,
    udp_addr,
    write_script,
)
from tests.suspend.httpserver import HttpServer

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
  local url = KSR.hdr.get("X-Url") or ""
  local fn = KSR.hdr.get("X-Fn") or "query"
  if KSR.is_INVITE() then KSR.tm.t_newtran() end
  local rc
  if fn == "query" then rc = KSR.http_client.query(url, "$var(r)")
  elseif fn == "post" then rc = KSR.http_client.query_post(url, "a=1", "$var(r)")
  elseif fn == "post_hdrs" then
    rc = KSR.http_client.query_post_hdrs(url, "x", "Content-Type: text/plain", "$var(r)")
  elseif fn == "request" then
    rc = KSR.http_client.query_request("PUT", url, "data", "X-Token: abc", "$var(r)")
  elseif fn == "get_hdrs" then rc = KSR.http_client.get_hdrs(url, "", "X-Token: t", "$var(r)")
  elseif fn == "connect" then rc = KSR.http_client.curl_connect("api", url, "$var(r)")
  elseif fn == "connect_post" then
    rc = KSR.http_client.curl_connect_post("api", url, "application/json", "{}", "$var(r)")
  elseif fn == "pcall" then
    local ok, v = pcall(function() return KSR.http_client.query(url, "$var(r)") end)
    rc = v
  end
  if KSR.is_INVITE() then
    if KSR.tm.t_is_canceled() > 0 then
      KSR.info("resumed into a cancelled transaction")
      KSR.x.exit()
    end
    KSR.tm.t_reply(200, "Late")
    KSR.x.exit()
  end
  local body = string.gsub(KSR.pv.get("$var(r)") or "", "\\n", "~")
  local err = KSR.pv.get("$curlerror(" .. rc .. ")")
  KSR.hdr.append_to_reply("X-Result: " .. rc .. "|" .. body .. "|" .. err .. "\\r\\n")
  KSR.sl.sl_send_reply(200, "Done")
end
"""


@pytest.fixture
def http() -> Any:
    with HttpServer() as s:
        yield s


def _cfg(http: HttpServer, **extra: Any) -> Any:
    params = {"httpcon": [f"api=>{http.url}"], **extra}
    return make_config(["sl", "tm", "textops", "http_client"], {"http_client": params})


async def _ask(peer: UdpPeer, server: Server, url: str, fn: str = "query", n: int = 0) -> str:
    req = sip_request(
        "OPTIONS",
        port=peer.port,
        branch=f"z9hG4bK-h{n}",
        call_id=f"http-{n}",
        extra=f"X-Url: {url}\nX-Fn: {fn}",
    )
    await peer.send(req, udp_addr(server))
    rpl = await peer.recv_reply(timeout=5.0)
    assert rpl.status == 200, rpl.reason
    return str(rpl.get("X-Result"))


@pytest.fixture
async def served(tmp_path: Path, http: HttpServer) -> AsyncIterator[tuple[Server, UdpPeer]]:
    script = write_script(tmp_path, LUA)
    async with running_server(_cfg(http), script) as server:
        peer = await UdpPeer().bind()
        try:
            yield server, peer
        finally:
            peer.close()


async def test_return_codes_and_results(served: tuple[Server, UdpPeer], http: HttpServer) -> None:
    server, peer = served
    u = http.url
    assert await _ask(peer, server, f"{u}/ok") == "200|first line|HTTP result code"
    assert await _ask(peer, server, f"{u}/404", n=1) == "404|missing|HTTP result code"
    assert await _ask(peer, server, f"{u}/500", n=2) == "500||HTTP result code"  # no body on 5xx
    refused = f"http://127.0.0.1:{free_port(trio.socket.SOCK_STREAM)}/x"
    assert await _ask(peer, server, refused, n=3) == "7||Couldn't connect to server"
    assert await _ask(peer, server, "ftp://x/y", n=4) == "1||Unsupported protocol"
    assert (
        await _ask(peer, server, f"{u}/echo", "post", 5)
        == "200|POST|a=1||application/x-www-form-urlencoded|HTTP result code"
    )
    assert (
        await _ask(peer, server, f"{u}/echo", "post_hdrs", 6)
        == "200|POST|x||text/plain|HTTP result code"
    )
    assert (
        await _ask(peer, server, f"{u}/echo", "request", 7) == "200|PUT|data|abc||HTTP result code"
    )
    assert await _ask(peer, server, f"{u}/echo", "get_hdrs", 8) == "200|GET||t||HTTP result code"
    # the request functions keep the whole body
    assert (
        await _ask(peer, server, f"{u}/ok", "request", 9)
        == "200|first line~second line~|HTTP result code"
    )
    assert (
        await _ask(peer, server, "ok", "connect", 10)
        == "200|first line~second line~|HTTP result code"
    )
    assert (
        await _ask(peer, server, "/echo", "connect_post", 11)
        == "200|POST|{}||application/json|HTTP result code"
    )
    assert await _ask(peer, server, f"{u}/ok", "pcall", 12) == "200|first line|HTTP result code"


async def test_a_slow_service_does_not_stall_the_worker(
    served: tuple[Server, UdpPeer], http: HttpServer
) -> None:
    server, peer = served
    slow = [await UdpPeer().bind() for _ in range(10)]
    try:
        for i, p in enumerate(slow):
            req = sip_request(
                "OPTIONS",
                port=p.port,
                branch=f"z9hG4bK-s{i}",
                call_id=f"slow-{i}",
                extra=f"X-Url: {http.url}/slow?ms=400\nX-Fn: query",
            )
            await p.send(req, udp_addr(server))
        await trio.sleep(0.1)
        assert server.runner.suspended == 10  # all ten wait at once
        # the same worker answers others meanwhile
        assert await _ask(peer, server, f"{http.url}/ok", n=99) == "200|first line|HTTP result code"
        assert server.runner.suspended == 10
        for p in slow:
            rpl = await p.recv_reply(timeout=5.0)
            assert rpl.get("X-Result") == "200|slow|HTTP result code"
    finally:
        for p in slow:
            p.close()


async def test_timeout_gives_curl_code_28(tmp_path: Path, http: HttpServer) -> None:
    script = write_script(tmp_path, LUA)
    cfg = _cfg(http, connection_timeout=200, timeout_mode=2)
    async with running_server(cfg, script) as server:
        peer = await UdpPeer().bind()
        try:
            got = await _ask(peer, server, f"{http.url}/slow?ms=2000")
            assert got == "28||Timeout was reached"
        finally:
            peer.close()


async def test_cancel_while_waiting_resumes_into_a_cancelled_transaction(
    served: tuple[Server, UdpPeer], http: HttpServer
) -> None:
    server, peer = served
    addr = udp_addr(server)
    extra = f"X-Url: {http.url}/slow?ms=400\nX-Fn: query"
    invite = sip_request("INVITE", port=peer.port, branch="z9hG4bK-inv", call_id="c1", extra=extra)
    await peer.send(invite, addr)
    assert (await peer.recv_reply()).status == 100
    await trio.sleep(0.05)
    assert server.runner.suspended == 1
    cancel = sip_request("CANCEL", port=peer.port, branch="z9hG4bK-inv", call_id="c1")
    await peer.send(cancel, addr)
    got: dict[str, Response] = {}
    for _ in range(2):
        r = await peer.recv_reply()
        got[r.cseq.method] = r
    assert got["CANCEL"].status == 200
    assert got["INVITE"].status == 487
    to_tag = got["INVITE"].to.params.get("tag")
    ack = sip_request("ACK", port=peer.port, branch="z9hG4bK-inv", call_id="c1", to_tag=to_tag)
    await peer.send(ack, addr)
    with trio.fail_after(3):
        while server.runner.suspended:
            await trio.sleep(0.02)
    assert await peer.nothing(0.3)  # the resumed route sent nothing (no 200 "Late")


VERSIONED = {
    "lua": """
function ksr_request_route()
  local url = KSR.hdr.get("X-Url")
  if url then KSR.http_client.query(url, "$var(r)") end
  KSR.sl.sl_send_reply(200, "{label}")
end
""",
    "py": """
import KSR

class R:
    def ksr_request_route(self, msg):
        url = KSR.hdr.get("X-Url")
        if url:
            KSR.http_client.query(url, "$var(r)")
        KSR.sl.sl_send_reply(200, "{label}")

def mod_init():
    return R()
""",
}


@pytest.mark.parametrize("lang", ["lua", "py"])
async def test_a_waiting_route_finishes_in_its_own_script_version(
    tmp_path: Path, http: HttpServer, lang: str
) -> None:
    script = tmp_path / f"route.{lang}"
    script.write_text(VERSIONED[lang].format(label="v1"))
    async with running_server(_cfg(http), script) as server:
        addr = udp_addr(server)
        slow, fast = await UdpPeer().bind(), await UdpPeer().bind()
        try:
            extra = f"X-Url: {http.url}/slow?ms=400"
            await slow.send(sip_request(port=slow.port, branch="z9hG4bK-v1", extra=extra), addr)
            await trio.sleep(0.1)
            assert server.runner.suspended == 1
            script.write_text(VERSIONED[lang].format(label="v2"))
            method = "app_lua.reload" if lang == "lua" else "app_python.reload"
            reply = server.rpc.handle({"jsonrpc": "2.0", "method": method, "params": [], "id": 1})
            assert reply is not None
            assert "result" in reply, reply
            await fast.send(sip_request(port=fast.port, branch="z9hG4bK-v2"), addr)
            assert (await fast.recv_reply()).reason == "v2"  # new messages: the new version
            assert (await slow.recv_reply()).reason == "v1"  # the waiting one: its own
        finally:
            slow.close()
            fast.close()
