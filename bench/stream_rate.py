"""Request/response rate over one connection per stream transport (tcp, tls, ws, wss, HTTP).

Client and server run in one process (one trio loop), in lock-step: each OPTIONS waits for its
200 before the next goes. The numbers compare the transports' own cost; they are not a
capacity figure. CPU on a shared machine is noisy: compare runs made at the same time.

    python -m bench.stream_rate [--count 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio

from ksr.sip.framing import StreamFramer
from tests.support import (
    make_config,
    running_server,
    self_signed_certificate,
    sip_request,
    write_script,
)
from tests.transport.clients import WsClient, addr, connect, http_request

SCRIPT = """
function ksr_request_route() KSR.sl.sl_send_reply(200, "OK") end
function http_event(ev) KSR.xhttp.xhttp_reply(200, "OK", "text/plain", "ok") end
"""


async def _sip_stream(stream: trio.abc.Stream, count: int, via: str) -> None:
    framer = StreamFramer()
    for i in range(count):
        await stream.send_all(sip_request(call_id=f"b{i}").replace("SIP/2.0/UDP", via).encode())
        while framer.next_message() is None:
            framer.feed(await stream.receive_some(65536))


async def _ws(client: WsClient, count: int, via: str) -> None:
    for i in range(count):
        await client.send_sip(sip_request(call_id=f"b{i}").replace("SIP/2.0/UDP", via))
        await client.recv_sip()


async def main(count: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ksr-bench-"))
    cert, key = self_signed_certificate(tmp)
    config = make_config(
        ["sl", "xhttp", "tls"],
        {
            "xhttp": {"event_callback": "http_event"},
            "tls": {"certificate": str(cert), "private_key": str(key)},
        },
        listen=["tcp:127.0.0.1:0", "tls:127.0.0.1:0", "ws:127.0.0.1:0", "wss:127.0.0.1:0"],
    )
    async with running_server(config, write_script(tmp, SCRIPT)) as server:
        for proto in ("tcp", "tls", "ws", "wss", "http"):
            tls = proto in ("tls", "wss")
            stream = await connect(*addr(server, "tcp" if proto == "http" else proto), tls=tls)
            t0 = time.perf_counter()
            if proto in ("tcp", "tls"):
                await _sip_stream(stream, count, f"SIP/2.0/{proto.upper()}")
            elif proto == "http":
                for _ in range(count):
                    await http_request(stream, "GET", "/x")
            else:
                client = WsClient(stream)
                await client.handshake()
                t0 = time.perf_counter()
                await _ws(client, count, f"SIP/2.0/{proto.upper()}")
            dt = time.perf_counter() - t0
            print(f"{proto:5s} {count / dt:8.0f} requests/s")
            await stream.aclose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    trio.run(main, ap.parse_args().count)
