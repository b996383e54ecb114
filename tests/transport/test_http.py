"""HTTP on SIP TCP listeners (xhttp): the script answers with xhttp_reply; JSON-RPC over HTTP;
bad requests cost only their own connection."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest
import trio

from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

from .clients import addr, connect, http_request, read_until_closed

LUA = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "SIP OK")
end

function http_event(evname)
  local url = KSR.pv.get("$hu")
  if string.sub(url, 1, 4) == "/RPC" then
    KSR.jsonrpcs.dispatch()
    return 1
  end
  KSR.hdr.append_to_reply("X-Event: " .. evname .. "\\r\\n")
  KSR.hdr.append_to_reply("X-Hu: " .. KSR.xhttp.get_hu() .. "\\r\\n")
  local body = "method=" .. KSR.pv.get("$rm") .. " get=" .. tostring(KSR.is_GET())
    .. " agent=" .. (KSR.pv.get("$hdr(User-Agent)") or "-") .. " si=" .. KSR.pv.get("$si")
    .. " body=" .. (KSR.pv.get("$rb") or "")
  local rc = KSR.xhttp.xhttp_reply(200, "Fine", "text/plain", body)
  KSR.info("rc=" .. rc)
  if rc ~= 0 then error("xhttp_reply returned " .. rc) end
end
"""

PY = """
import KSR

class Router:
    def ksr_request_route(self, msg):
        KSR.sl.sl_send_reply(200, "SIP OK")
        return 1

    def http_event(self, msg, evname):
        url = KSR.pv.get("$hu")
        if url.startswith("/RPC"):
            KSR.jsonrpcs.dispatch()
            return 1
        KSR.hdr.append_to_reply("X-Event: " + evname + "\\r\\n")
        KSR.hdr.append_to_reply("X-Hu: " + KSR.xhttp.get_hu() + "\\r\\n")
        body = ("method=" + KSR.pv.get("$rm") + " get=" + str(KSR.is_GET()).lower()
                + " agent=" + (KSR.pv.get("$hdr(User-Agent)") or "-") + " si=" + KSR.pv.get("$si")
                + " body=" + (KSR.pv.get("$rb") or ""))
        rc = KSR.xhttp.xhttp_reply(200, "Fine", "text/plain", body)
        if rc != 0:
            raise RuntimeError("xhttp_reply returned %r" % rc)
        return 1

def mod_init():
    return Router()
"""


def _config(**xhttp: object) -> object:
    return make_config(
        ["sl", "xhttp", "jsonrpcs"],
        {
            "xhttp": {"event_callback": "http_event", **xhttp},
            "jsonrpcs": {"transport": 1, "pretty_format": 1},
        },
        listen=["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
    )


@pytest.mark.parametrize(("suffix", "text"), [(".lua", LUA), (".py", PY)])
async def test_script_answers_http(tmp_path: Path, suffix: str, text: str) -> None:
    script = write_script(tmp_path, text, suffix)
    async with running_server(_config(), script) as server:  # type: ignore[arg-type]
        stream = await connect(*addr(server, "tcp"))
        r = await http_request(stream, "GET", "/status?x=1", headers=[("User-Agent", "probe/1")])
        assert (r.status, r.reason) == (200, "Fine")
        assert r.headers["content-type"] == "text/plain"
        assert r.headers["x-event"] == "xhttp:request"
        assert r.headers["x-hu"] == "/status?x=1"
        assert r.body == b"method=GET get=true agent=probe/1 si=127.0.0.1 body="
        # keep-alive: a POST with a body on the same connection
        r2 = await http_request(stream, "POST", "/data", body=b"hello")
        assert r2.status == 200
        assert r2.body.endswith(b"method=POST get=false agent=- si=127.0.0.1 body=hello")
        await stream.aclose()


async def test_jsonrpc_over_http(tmp_path: Path) -> None:
    script = write_script(tmp_path, LUA)
    async with running_server(_config(), script) as server:  # type: ignore[arg-type]
        stream = await connect(*addr(server, "tcp"))
        req = json.dumps({"jsonrpc": "2.0", "method": "core.uptime", "id": 2178}).encode()
        r = await http_request(
            stream, "POST", "/RPC", body=req, headers=[("Content-Type", "application/json")]
        )
        assert (r.status, r.reason) == (200, "OK")
        assert r.headers["content-type"] == "application/json"
        doc = json.loads(r.body)
        assert doc["id"] == 2178
        assert doc["jsonrpc"] == "2.0"
        assert set(doc["result"]) == {"now", "up_since", "uptime"}
        assert b'\n\t"result":\t{' in r.body  # pretty_format 1 as Kamailio prints it
        bad = json.dumps({"jsonrpc": "2.0", "method": "no.such.method", "id": 2383}).encode()
        r2 = await http_request(stream, "POST", "/RPC", body=bad)
        assert (r2.status, r2.reason) == (500, "Method Not Found")
        assert json.loads(r2.body) == {
            "jsonrpc": "2.0",
            "error": {"code": 500, "message": "Method Not Found"},
            "id": 2383,
        }
        await stream.aclose()


async def test_url_filters_and_bad_requests(tmp_path: Path) -> None:
    script = write_script(tmp_path, LUA)
    async with running_server(
        _config(url_skip="^/skip", url_match="^/(ok|skip)"), script
    ) as server:  # type: ignore[arg-type]
        tcp = addr(server, "tcp")
        s1 = await connect(*tcp)
        assert (await http_request(s1, "GET", "/skip/me")).status == 404
        assert (await http_request(s1, "GET", "/other")).status == 404
        assert (await http_request(s1, "GET", "/ok")).status == 200
        # a malformed header line: 400 and that connection closes; the other stays usable
        bad = await connect(*tcp)
        await bad.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n")
        answer = await read_until_closed(bad)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert (await http_request(s1, "GET", "/ok")).status == 200
        await s1.aclose()
        # SIP still answered over UDP
        peer = await UdpPeer().bind()
        await peer.send(sip_request(port=peer.port), udp_addr(server))
        assert (await peer.recv_reply()).status == 200
        peer.close()


async def test_http_without_xhttp_closes(tmp_path: Path) -> None:
    script = write_script(tmp_path, LUA)
    config = make_config(["sl"], listen=["tcp:127.0.0.1:0"])
    async with running_server(config, script) as server:
        stream = await connect(*addr(server, "tcp"))
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await read_until_closed(stream) == b""


async def test_script_error_gives_500(tmp_path: Path) -> None:
    script = write_script(
        tmp_path, "function ksr_request_route() end\nfunction http_event(ev) error('boom') end\n"
    )
    async with running_server(_config(), script) as server:  # type: ignore[arg-type]
        stream = await connect(*addr(server, "tcp"))
        assert (await http_request(stream, "GET", "/")).status == 500
        await stream.aclose()


async def test_connection_reset_costs_only_that_connection(tmp_path: Path) -> None:
    script = write_script(tmp_path, LUA)
    async with running_server(_config(), script) as server:  # type: ignore[arg-type]
        tcp = addr(server, "tcp")
        for first in (b"GET /slow HTTP/1.1\r\nHost: x\r\n", b"OPTIONS sip:x SIP/2.0\r\n"):
            s = trio.socket.socket()
            await s.connect(tcp)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await s.send(first)
            await trio.sleep(0.05)
            s.close()  # RST instead of FIN
        stream = await connect(*tcp)
        assert (await http_request(stream, "GET", "/ok")).status == 200
        await stream.aclose()
