"""HTTP and WebSocket edge cases on the SIP TCP port, with raw sockets: every request gets an
answer or a clean close with a log line (never a reset without a status)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest
import trio

from tests.support import make_config, running_server, write_script

from .clients import addr, connect, read_until_closed
from .test_http import LUA, _config


async def _exchange(tmp_path: Path, data: bytes, listen: str = "tcp") -> bytes:
    script = write_script(tmp_path, LUA)
    async with running_server(_config(), script) as server:  # type: ignore[arg-type]
        stream = await connect(*addr(server, listen))
        try:
            await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # the server answered and closed before it read everything
        return await read_until_closed(stream)


def status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


async def test_connect_gets_405(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    answer = await _exchange(
        tmp_path, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n"
    )
    assert status_line(answer) == b"HTTP/1.1 405 Method Not Allowed"
    assert b"Allow: " in answer
    assert any("CONNECT" in r.getMessage() for r in caplog.records if r.name == "ksr.http")


@pytest.mark.parametrize("size", [70_000, 150_000, 1_000_000])
async def test_long_headers_get_431(tmp_path: Path, size: int) -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    answer = await _exchange(tmp_path, data)
    assert status_line(answer) == b"HTTP/1.1 431 Request Header Fields Too Large"


@pytest.mark.parametrize("version", [b"HTTP/9.9", b"HTTP/2.0", b"HTTP/1.2"])
async def test_unknown_http_versions_get_505(tmp_path: Path, version: bytes) -> None:
    answer = await _exchange(tmp_path, b"GET / " + version + b"\r\nHost: x\r\n\r\n")
    assert status_line(answer) == b"HTTP/1.1 505 HTTP Version Not Supported"


async def test_http_1_0_still_answered(tmp_path: Path) -> None:
    answer = await _exchange(tmp_path, b"GET / HTTP/1.0\r\n\r\n")
    assert status_line(answer).startswith(b"HTTP/1.1 200 ")


async def test_bad_request_reason_is_the_real_one(tmp_path: Path) -> None:
    answer = await _exchange(tmp_path, b"GET / HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n")
    assert status_line(answer) == b"HTTP/1.1 400 Bad Request"


# -- WebSocket ------------------------------------------------------------------------------------
def _frame(payload_len: int, fin: bool = True) -> bytes:
    """A masked binary frame header for a payload of ``payload_len`` bytes (payload not included)."""
    head = bytes([0x82 if fin else 0x02])
    if payload_len < 126:
        head += bytes([0x80 | payload_len])
    elif payload_len < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", payload_len)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", payload_len)
    return head + b"\x00\x00\x00\x00"  # masking key 0: the payload goes as it is


HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: sip\r\n\r\n"
)


@pytest.mark.parametrize("declared", [70_000, 10_000_000])
async def test_oversized_websocket_frame_closes_1009_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, declared: int
) -> None:
    caplog.set_level(logging.INFO)
    script = write_script(tmp_path, "function ksr_request_route() end\n")
    config = make_config(["sl", "websocket"], listen=["ws:127.0.0.1:0"])
    async with running_server(config, script) as server:
        stream = await connect(*addr(server, "ws"))
        await stream.send_all(HANDSHAKE)
        got = b""
        with trio.fail_after(3):
            while b"\r\n\r\n" not in got:
                got += await stream.receive_some(65536)
        assert got.startswith(b"HTTP/1.1 101 ")
        rest = got.split(b"\r\n\r\n", 1)[1]
        try:
            await stream.send_all(_frame(declared) + b"x" * min(declared, 70_000))
        except trio.BrokenResourceError:
            pass
        rest += await read_until_closed(stream)
    # a Close frame (opcode 8) with code 1009
    assert rest[:1] == b"\x88", rest[:20]
    assert struct.unpack("!H", rest[2:4])[0] == 1009
    lines = [r.getMessage() for r in caplog.records if r.name == "ksr.ws"]
    assert any("1009" in line for line in lines), lines
