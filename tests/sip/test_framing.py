"""StreamFramer: cutting a TCP byte stream into SIP messages by Content-Length."""

from __future__ import annotations

import pytest

from ksr.sip.errors import RemoteProtocolError
from ksr.sip.framing import StreamFramer
from ksr.sip.message import parse_message_untrusted


def req(n: int, body: bytes = b"") -> bytes:
    return (
        f"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK{n}\r\nCall-ID: {n}\r\n"
        f"l: {len(body)}\r\n\r\n"
    ).encode() + body


def drain(f: StreamFramer) -> list[bytes]:
    out = []
    while (m := f.next_message()) is not None:
        out.append(m)
    return out


def test_coalesced_messages() -> None:
    f = StreamFramer()
    data = req(1) + req(2, b"body\r\n\r\nmore") + req(3)
    f.feed(data)
    msgs = drain(f)
    assert msgs == [req(1), req(2, b"body\r\n\r\nmore"), req(3)]
    assert parse_message_untrusted(msgs[1], datagram=False).body == b"body\r\n\r\nmore"


@pytest.mark.parametrize("chunk", [1, 2, 7, 50])
def test_split_messages(chunk: int) -> None:
    data = req(1, b"x" * 30) + req(2)
    f = StreamFramer()
    got: list[bytes] = []
    for i in range(0, len(data), chunk):
        f.feed(data[i : i + chunk])
        got.extend(drain(f))
    assert got == [req(1, b"x" * 30), req(2)]
    assert f.buf == bytearray()


def test_keepalive_ping_and_pong() -> None:
    f = StreamFramer()
    f.feed(b"\r\n\r\n")
    assert f.next_message() == b"\r\n\r\n"  # a ping: the caller answers CRLF
    f.feed(b"\r\n" + req(1))  # a pong before a message is skipped
    assert f.next_message() == req(1)
    assert f.next_message() is None


def test_too_large() -> None:
    f = StreamFramer(max_size=100)
    f.feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        f.next_message()
    assert info.value.status_hint == 513
    f = StreamFramer(max_size=100)
    f.feed(b"X" * 200)  # no end of header in sight
    with pytest.raises(RemoteProtocolError):
        f.next_message()


@pytest.mark.parametrize(
    "head",
    [
        b"OPTIONS sip:a@b SIP/2.0\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nl: x\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nl: \xd9\xa3\r\n\r\n",
    ],
)
def test_bad_content_length(head: bytes) -> None:
    f = StreamFramer()
    f.feed(head)
    with pytest.raises(RemoteProtocolError):
        f.next_message()
