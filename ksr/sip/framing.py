"""Cutting a byte stream (TCP, TLS) into SIP messages by Content-Length (RFC 3261 §18.3)."""

from __future__ import annotations

from .abnf import uint
from .errors import RemoteProtocolError
from .headers import header_key
from .message import find_head_end


class StreamFramer:
    """Feed bytes with ``feed``; take whole messages with ``next_message``.

    CRLF keep-alives (RFC 5626 §3.5.1) are reported as ``b"\\r\\n\\r\\n"`` pings so the caller
    can answer with a single CRLF pong.
    """

    def __init__(self, max_size: int = 65535) -> None:
        self.buf = bytearray()
        self.max_size = max_size

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next_message(self) -> bytes | None:
        buf = self.buf
        while buf.startswith(b"\r\n"):
            if buf.startswith(b"\r\n\r\n"):
                del buf[:4]
                return b"\r\n\r\n"
            del buf[:2]  # a pong, or an empty line before a message (RFC 3261 §7.5)
        end, sep = find_head_end(buf)
        if end < 0:
            if len(buf) > self.max_size:
                raise RemoteProtocolError("Message header too large", 513)
            return None
        clen = _content_length(bytes(buf[:end]))
        total = end + sep + clen
        if total > self.max_size:
            raise RemoteProtocolError("Message too large", 513)
        if len(buf) < total:
            return None
        msg = bytes(buf[:total])
        del buf[:total]
        return msg


def _content_length(head: bytes) -> int:
    text = head.decode("latin-1")
    values = set()
    for line in text.split("\n"):
        name, colon, value = line.partition(":")
        if colon and header_key(name.strip()) == "content-length":
            values.add(value.strip())
    if not values:
        raise RemoteProtocolError("Content-Length required on stream transports")
    if len(values) > 1:
        raise RemoteProtocolError("Conflicting Content-Length headers")
    n = uint(values.pop(), 2**31)
    if n is None:
        raise RemoteProtocolError("Bad Content-Length")
    return n
