"""SIP over TLS: a script answers OPTIONS on a tls: listener; forwarding to a transport=tls
target opens an outbound TLS connection; plain TCP keeps working beside it."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio

from ksr.sip.framing import StreamFramer
from ksr.sip.message import Request, Response, parse_message_untrusted
from tests.support import make_config, running_server, sip_request, write_script

from .clients import addr, connect, read_until_closed

LUA = """
function ksr_request_route()
  if KSR.is_OPTIONS() then
    KSR.hdr.append_to_reply("X-Proto: " .. KSR.pv.get("$pr") .. "\\r\\n")
    KSR.sl.sl_send_reply(200, "TLS OK")
    return 1
  end
  KSR.forward_uri(KSR.pv.get("$hdr(X-Target)"))
end
"""

PY = """
import KSR

class Router:
    def ksr_request_route(self, msg):
        if KSR.is_OPTIONS():
            KSR.hdr.append_to_reply("X-Proto: " + KSR.pv.get("$pr") + "\\r\\n")
            KSR.sl.sl_send_reply(200, "TLS OK")
            return 1
        KSR.forward_uri(KSR.pv.get("$hdr(X-Target)"))
        return 1

def mod_init():
    return Router()
"""


def _config(cert: Path, key: Path) -> object:
    return make_config(
        ["sl", "tls"],
        {"tls": {"certificate": str(cert), "private_key": str(key)}},
        listen=["udp:127.0.0.1:0", "tcp:127.0.0.1:0", "tls:127.0.0.1:0"],
    )


async def _read_message(stream: trio.abc.Stream, framer: StreamFramer) -> Request | Response:
    with trio.fail_after(3):
        while True:
            msg = framer.next_message()
            if msg is not None:
                return parse_message_untrusted(msg, datagram=False)
            framer.feed(await stream.receive_some(65536))


@pytest.mark.parametrize(("suffix", "text"), [(".lua", LUA), (".py", PY)])
async def test_options_over_tls(
    tmp_path: Path, cert_files: tuple[Path, Path], suffix: str, text: str
) -> None:
    script = write_script(tmp_path, text, suffix)
    async with running_server(_config(*cert_files), script) as server:  # type: ignore[arg-type]
        host, port = addr(server, "tls")
        stream = await connect(host, port, tls=True)
        req = sip_request(call_id="tls-1").replace("SIP/2.0/UDP", "SIP/2.0/TLS")
        await stream.send_all(req.encode())
        rpl = await _read_message(stream, StreamFramer())
        assert isinstance(rpl, Response)
        assert (rpl.status, rpl.reason) == (200, "TLS OK")
        assert rpl.get("X-Proto") == "tls"
        assert rpl.get("Call-ID") == "tls-1"
        # the connection is reused for the next request
        await stream.send_all(
            sip_request(call_id="tls-2", cseq=2).replace("SIP/2.0/UDP", "SIP/2.0/TLS").encode()
        )
        rpl2 = await _read_message(stream, StreamFramer())
        assert isinstance(rpl2, Response)
        assert rpl2.get("Call-ID") == "tls-2"
        await stream.aclose()

        # plain TCP beside TLS
        thost, tport = addr(server, "tcp")
        tcp = await connect(thost, tport)
        await tcp.send_all(
            sip_request(call_id="tcp-1").replace("SIP/2.0/UDP", "SIP/2.0/TCP").encode()
        )
        rpl3 = await _read_message(tcp, StreamFramer())
        assert isinstance(rpl3, Response)
        assert rpl3.get("X-Proto") == "tcp"
        await tcp.aclose()


async def test_forward_opens_outbound_tls(tmp_path: Path, cert_files: tuple[Path, Path]) -> None:
    """A request forwarded to sip:...;transport=tls reaches a real TLS server (Python ssl)."""
    cert, key = cert_files
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(str(cert), str(key))
    got: list[Request | Response] = []
    arrived = trio.Event()

    async def uas(stream: trio.SSLStream[trio.SocketStream]) -> None:
        got.append(await _read_message(stream, StreamFramer()))
        arrived.set()

    script = write_script(tmp_path, LUA)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_ssl_over_tcp, uas, 0, sctx)
        uas_port = listeners[0].transport_listener.socket.getsockname()[1]
        async with running_server(_config(*cert_files), script) as server:  # type: ignore[arg-type]
            host, port = addr(server, "tcp")
            stream = await connect(host, port)
            target = f"sip:bob@127.0.0.1:{uas_port};transport=tls"
            msg = sip_request("MESSAGE", call_id="out-tls", extra=f"X-Target: {target}")
            await stream.send_all(msg.replace("SIP/2.0/UDP", "SIP/2.0/TCP").encode())
            with trio.fail_after(3):
                await arrived.wait()
            await stream.aclose()
        nursery.cancel_scope.cancel()
    fwd = got[0]
    assert isinstance(fwd, Request)
    assert fwd.method == "MESSAGE"
    assert fwd.top_via.transport.upper() == "TLS"
    assert fwd.get("Call-ID") == "out-tls"


async def test_plaintext_on_tls_port_costs_only_that_connection(
    tmp_path: Path, cert_files: tuple[Path, Path]
) -> None:
    script = write_script(tmp_path, LUA)
    async with running_server(_config(*cert_files), script) as server:  # type: ignore[arg-type]
        host, port = addr(server, "tls")
        plain = await connect(host, port)
        await plain.send_all(sip_request().encode())
        assert await read_until_closed(plain) in (b"", b"\x15\x03\x01\x00\x02\x02\x16")
        stream = await connect(host, port, tls=True)
        await stream.send_all(
            sip_request(call_id="after").replace("SIP/2.0/UDP", "SIP/2.0/TLS").encode()
        )
        rpl = await _read_message(stream, StreamFramer())
        assert rpl.get("Call-ID") == "after"
        await stream.aclose()
