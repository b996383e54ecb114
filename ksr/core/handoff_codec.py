"""The hand-off wire format between worker processes, sans-IO (the shell: handoff.py).

One frame is one unix datagram: a fixed head (operation, origin worker, a source port, a
connection id, the length of a text "meta" part), the meta text, then the payload bytes.

- ``OP_MSG``: a SIP message for the worker that owns it. Meta: ``proto ip port src_ip`` of
  the listener it arrived on and its sender; the head carries the sender's port and, for
  streams, the id of the connection in the origin worker. Payload: the message.
- ``OP_SEND``: bytes to send over a stream connection the receiving worker holds. Meta:
  ``proto host port``; the head carries the connection id there.
- ``OP_RPC`` / ``OP_RPC_REPLY``: a JSON-RPC request for the receiving worker (meta: request
  id) and its answer in pieces of ``CHUNK`` bytes (meta: ``id piece count``).
- ``OP_NOTE``: a notice for the other workers (meta: its topic).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

OP_MSG, OP_SEND, OP_RPC, OP_RPC_REPLY, OP_NOTE = 1, 2, 3, 4, 5
HEAD = struct.Struct(">BBHQH")  # op, origin worker, source port, connection id, meta length
CHUNK = 60_000  # RPC answers travel in pieces of this size


class FrameError(ValueError):
    """A frame that does not follow the format (a bug or a foreign sender)."""


@dataclass(frozen=True, slots=True)
class Frame:
    op: int
    origin: int
    port: int
    conn_id: int
    meta: str
    payload: bytes


def encode(op: int, origin: int, port: int, conn_id: int, meta: str, payload: bytes) -> bytes:
    m = meta.encode()
    return HEAD.pack(op, origin, port, conn_id, len(m)) + m + payload


def decode(data: bytes) -> Frame:
    if len(data) < HEAD.size:
        raise FrameError("hand-off frame shorter than its head")
    op, origin, port, conn_id, mlen = HEAD.unpack_from(data)
    start = HEAD.size
    if start + mlen > len(data):
        raise FrameError("hand-off frame meta runs past its end")
    try:
        meta = data[start : start + mlen].decode()
    except UnicodeDecodeError:
        raise FrameError("hand-off frame meta is not UTF-8") from None
    return Frame(op, origin, port, conn_id, meta, data[start + mlen :])


# -- OP_MSG ------------------------------------------------------------------------------------
def msg_meta(proto: str, ip: str, port: int, src_ip: str) -> str:
    return f"{proto} {ip} {port} {src_ip}"


def parse_msg_meta(meta: str) -> tuple[str, str, int, str]:
    """(proto, listener ip, listener port, source ip)."""
    parts = meta.split(" ")
    if len(parts) != 4 or not parts[2].isdigit():
        raise FrameError(f"bad message meta {meta!r}")
    return parts[0], parts[1], int(parts[2]), parts[3]


# -- OP_SEND -----------------------------------------------------------------------------------
def send_meta(proto: str, host: str, port: int) -> str:
    return f"{proto} {host} {port}"


def parse_send_meta(meta: str) -> tuple[str, str, int]:
    parts = meta.split(" ")
    if len(parts) != 3 or not parts[2].isdigit():
        raise FrameError(f"bad send meta {meta!r}")
    return parts[0], parts[1], int(parts[2])


# -- OP_RPC / OP_RPC_REPLY ---------------------------------------------------------------------
def rpc_request(rid: int, method: str, params: list[Any]) -> tuple[str, bytes]:
    """(meta, payload) of an RPC request."""
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": rid}
    return str(rid), json.dumps(body).encode()


def parse_rpc_request(frame: Frame) -> tuple[int, Any]:
    if not frame.meta.isdigit():
        raise FrameError(f"bad RPC id {frame.meta!r}")
    return int(frame.meta), json.loads(frame.payload)


def rpc_reply_pieces(rid: int, reply: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(meta, payload) frames of one RPC answer: a datagram holds at most ``CHUNK`` bytes."""
    data = json.dumps(reply, default=str).encode()
    pieces = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
    return [(f"{rid} {n} {len(pieces)}", p) for n, p in enumerate(pieces)]


class ReplyPieces:
    """The pieces of one RPC answer as they arrive (in any order)."""

    def __init__(self) -> None:
        self.chunks: dict[int, bytes] = {}
        self.total = 0

    def add(self, n: int, total: int, piece: bytes) -> bool:
        """True once every piece is there."""
        self.chunks[n], self.total = piece, total
        return len(self.chunks) == total

    def reply(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(b"".join(self.chunks[i] for i in range(self.total)))
        return out


def parse_reply_meta(meta: str) -> tuple[int, int, int]:
    """(request id, piece number, piece count)."""
    parts = meta.split(" ")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise FrameError(f"bad RPC reply meta {meta!r}")
    rid, n, total = (int(p) for p in parts)
    if n >= total:
        raise FrameError(f"RPC reply piece {n} of {total}")
    return rid, n, total
