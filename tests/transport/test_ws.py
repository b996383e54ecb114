"""SIP over WebSocket (RFC 7118): a ws: listener, and the Kamailio way (xhttp + handle_handshake)
on a tcp listener; replies and requests go over the client's connection; close and the
websocket:closed event; garbage frames cost only their connection."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from wsproto.events import AcceptConnection, CloseConnection, RejectConnection

from ksr.sip.message import Request, Response
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

from .clients import WsClient, addr, connect, read_until_closed

LUA = """
function ksr_request_route()
  if KSR.is_MESSAGE() then
    KSR.forward_uri(KSR.pv.get("$hdr(X-Target)"))
    return 1
  end
  if KSR.is_BYE() then
    KSR.websocket.close_reason(4000, "bye")
    return 1
  end
  KSR.hdr.append_to_reply("X-Proto: " .. KSR.pv.get("$pr") .. "\\r\\n")
  KSR.hdr.append_to_reply("X-Conid: " .. KSR.pv.get("$conid") .. "\\r\\n")
  KSR.sl.sl_send_reply(200, "WS OK")
end

function http_event(evname)
  local up = KSR.pv.get("$hdr(Upgrade)")
  if up ~= nil and string.lower(up) == "websocket" then
    if KSR.websocket.handle_handshake() > 0 then return 1 end
    return 1
  end
  KSR.xhttp.xhttp_reply(404, "Not Found", "", "")
end

function ws_event(evname)
  KSR.pv.sets("$shv(closed)", evname .. " " .. KSR.pv.get("$conid"))
end
"""

PY = """
import KSR

class Router:
    def ksr_request_route(self, msg):
        if KSR.is_MESSAGE():
            KSR.forward_uri(KSR.pv.get("$hdr(X-Target)"))
            return 1
        if KSR.is_BYE():
            KSR.websocket.close_reason(4000, "bye")
            return 1
        KSR.hdr.append_to_reply("X-Proto: " + KSR.pv.get("$pr") + "\\r\\n")
        KSR.hdr.append_to_reply("X-Conid: " + str(KSR.pv.get("$conid")) + "\\r\\n")
        KSR.sl.sl_send_reply(200, "WS OK")
        return 1

    def http_event(self, msg, evname):
        up = KSR.pv.get("$hdr(Upgrade)")
        if up is not None and up.lower() == "websocket":
            KSR.websocket.handle_handshake()
            return 1
        KSR.xhttp.xhttp_reply(404, "Not Found", "", "")
        return 1

    def ws_event(self, msg, evname):
        KSR.pv.sets("$shv(closed)", evname + " " + str(KSR.pv.get("$conid")))
        return 1

def mod_init():
    return Router()
"""


def _config() -> object:
    return make_config(
        ["sl", "xhttp", "websocket"],
        {"xhttp": {"event_callback": "http_event"}, "websocket": {"event_callback": "ws_event"}},
        listen=["tcp:127.0.0.1:0", "ws:127.0.0.1:0"],
    )


def _ws_request(method: str, port: int, call_id: str, extra: str = "") -> str:
    text = sip_request(method, port=port, call_id=call_id, extra=extra)
    return text.replace("SIP/2.0/UDP 127.0.0.1", "SIP/2.0/WS df7jal23ls0d.invalid")


async def _ws_client(server: object, proto: str) -> tuple[WsClient, int]:
    stream = await connect(*addr(server, proto))  # type: ignore[arg-type]
    client = WsClient(stream)
    ev = await client.handshake("/ws")
    assert isinstance(ev, AcceptConnection)
    assert ev.subprotocol == "sip"
    port = stream.socket.getsockname()[1]  # type: ignore[attr-defined]
    return client, port


@pytest.mark.parametrize(("suffix", "text"), [(".lua", LUA), (".py", PY)])
@pytest.mark.parametrize("listener", ["ws", "tcp"])
async def test_sip_over_websocket(tmp_path: Path, suffix: str, text: str, listener: str) -> None:
    script = write_script(tmp_path, text, suffix)
    async with running_server(_config(), script) as server:  # type: ignore[arg-type]
        alice, alice_port = await _ws_client(server, listener)
        await alice.send_sip(_ws_request("OPTIONS", alice_port, "ws-1"))
        rpl = await alice.recv_sip()
        assert isinstance(rpl, Response)
        assert (rpl.status, rpl.reason) == (200, "WS OK")
        assert rpl.get("X-Proto") == "ws"
        assert rpl.get("Call-ID") == "ws-1"
        conid = int(rpl.get("X-Conid") or 0)
        assert conid > 0
        # binary frames work too
        await alice.send_sip(_ws_request("OPTIONS", alice_port, "ws-2"), binary=True)
        assert (await alice.recv_sip()).get("Call-ID") == "ws-2"

        # a request to alice goes over her connection (found by address, transport=ws)
        bob, bob_port = await _ws_client(server, listener)
        target = f"sip:alice@127.0.0.1:{alice_port};transport=ws"
        await bob.send_sip(_ws_request("MESSAGE", bob_port, "ws-msg", extra=f"X-Target: {target}"))
        fwd = await alice.recv_sip()
        assert isinstance(fwd, Request)
        assert fwd.method == "MESSAGE"
        assert fwd.get("Call-ID") == "ws-msg"
        assert fwd.top_via.transport.upper() == "WS"

        # the script closes alice's connection; websocket:closed runs with her $conid
        await alice.send_sip(_ws_request("BYE", alice_port, "ws-bye"))
        ev = await alice.next_event()
        assert isinstance(ev, CloseConnection)
        assert ev.code == 4000
        assert ev.reason == "bye"
        with trio.fail_after(3):
            while server.shared_vars.get("closed") is None:
                await trio.sleep(0.01)
        assert server.shared_vars["closed"] == f"websocket:closed {conid}"
        await bob.stream.aclose()


async def test_bad_handshakes_and_garbage_frames(tmp_path: Path) -> None:
    script = write_script(tmp_path, LUA)
    async with running_server(_config(), script) as server:  # type: ignore[arg-type]
        for proto in ("ws", "tcp"):
            stream = await connect(*addr(server, proto))
            ev = await WsClient(stream).handshake(subprotocols=["msrpx"])
            assert isinstance(ev, RejectConnection)
            assert ev.status_code == 400
            await stream.aclose()
        good, good_port = await _ws_client(server, "ws")
        bad, _ = await _ws_client(server, "ws")
        # an unmasked client frame is a protocol error (RFC 6455 §5.1): close 1002, only that one
        await bad.stream.send_all(b"\x81\x05hello")
        ev = await bad.next_event()
        assert isinstance(ev, CloseConnection)
        assert ev.code == 1002
        assert await read_until_closed(bad.stream) == b""
        # plain garbage before any handshake on the ws listener
        junk = await connect(*addr(server, "ws"))
        await junk.send_all(b"\x00\x01\x02 not http at all\r\n\r\n")
        assert (await read_until_closed(junk)).startswith(b"HTTP/1.1 400")
        await good.send_sip(_ws_request("OPTIONS", good_port, "still-here"))
        rpl = await good.recv_sip()
        assert rpl.get("Call-ID") == "still-here"


async def test_wss_listener_and_ws_dump(tmp_path: Path, cert_files: tuple[Path, Path]) -> None:
    cert, key = cert_files
    config = make_config(
        ["sl", "xhttp", "websocket", "tls"],
        {
            "xhttp": {"event_callback": "http_event"},
            "websocket": {"event_callback": "ws_event"},
            "tls": {"certificate": str(cert), "private_key": str(key)},
        },
        listen=["tls:127.0.0.1:0", "wss:127.0.0.1:0"],
    )
    script = write_script(tmp_path, LUA)
    async with running_server(config, script) as server:
        clients = []
        for proto in ("wss", "tls"):  # a wss listener, and the handshake on a tls listener
            stream = await connect(*addr(server, proto), tls=True)
            client = WsClient(stream)
            assert isinstance(await client.handshake(), AcceptConnection)
            port = stream.transport_stream.socket.getsockname()[1]  # type: ignore[attr-defined]
            await client.send_sip(
                _ws_request("OPTIONS", port, f"wss-{proto}").replace("/WS ", "/WSS ")
            )
            rpl = await client.recv_sip()
            assert rpl.get("X-Proto") == "wss"
            clients.append(client)
        dump = server.rpc.handle({"jsonrpc": "2.0", "method": "ws.dump", "id": 1})["result"]
        assert [c["proto"] for c in dump["connections"]] == ["wss", "wss"]
        assert dump["info"]["wscounter"] == 2
        first = dump["connections"][0]["id"]
        assert (
            server.rpc.handle({"jsonrpc": "2.0", "method": "ws.close", "params": [first], "id": 2})[
                "result"
            ]
            is None
        )
        ev = await clients[0].next_event()
        assert isinstance(ev, CloseConnection)
        assert ev.code == 1000


async def test_udp_request_reaches_websocket_client(tmp_path: Path) -> None:
    """A request from UDP to a client connected by WebSocket (upgraded on the tcp listener)."""
    config = make_config(
        ["sl", "xhttp", "websocket"],
        {"xhttp": {"event_callback": "http_event"}},
        listen=["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
    )
    script = write_script(tmp_path, LUA)
    async with running_server(config, script) as server:
        alice, alice_port = await _ws_client(server, "tcp")
        peer = await UdpPeer().bind()
        target = f"sip:alice@127.0.0.1:{alice_port};transport=ws"
        await peer.send(
            sip_request("MESSAGE", port=peer.port, call_id="udp-ws", extra=f"X-Target: {target}"),
            udp_addr(server),
        )
        fwd = await alice.recv_sip()
        assert isinstance(fwd, Request)
        assert fwd.get("Call-ID") == "udp-ws"
        via = fwd.top_via
        assert via.transport.upper() == "WS"
        assert via.port == addr(server, "tcp")[1]
        peer.close()
