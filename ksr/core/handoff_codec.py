"""The hand-off wire format between worker processes, sans-IO (the shell: handoff.py).

One frame is one unix datagram: a fixed head (operation, origin worker, a source port, a
connection id, the length of a text "meta" part), the meta text, then the payload bytes.

- ``OP_MSG``: a SIP message for the worker that owns it. Meta: ``proto ip port src_ip`` of
  the listener it arrived on and its sender, and (when not 0) how many milliseconds it had
  waited in that worker's socket queue; the head carries the sender's port and, for
  streams, the id of the connection in the origin worker. Payload: the message.
- ``OP_SEND``: bytes to send over a stream connection the receiving worker holds. Meta:
  ``proto host port``; the head carries the connection id there.
- ``OP_RPC`` / ``OP_RPC_REPLY``: a JSON-RPC request for the receiving worker (meta: request
  id) and its answer in pieces of ``CHUNK`` bytes (meta: ``id piece count``).
- ``OP_NOTE``: a notice for the other workers (meta: its topic).
- ``OP_BATCH``: several frames for one worker in one datagram (the messages a worker passes
  on while it handles one batch of received datagrams: one send and one receive instead of
  one each). Payload: each frame preceded by its length (4 bytes).
"""

from __future__ import annotations

import json
import struct
from typing import Any, NamedTuple

OP_MSG, OP_SEND, OP_RPC, OP_RPC_REPLY, OP_NOTE, OP_BATCH = 1, 2, 3, 4, 5, 6
HEAD = struct.Struct(">BBHQH")  # op, origin worker, source port, connection id, meta length
CHUNK = 60_000  # RPC answers travel in pieces of this size
BATCH_MAX = 60_000  # bytes of frames packed into one OP_BATCH datagram
_LEN = struct.Struct(">I")


class FrameError(ValueError):
    """A frame that does not follow the format (a bug or a foreign sender)."""


class Frame(NamedTuple):  # a tuple: built once per hand-off, cheaper than a dataclass
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


# -- OP_BATCH ---------------------------------------------------------------------------------
def batches(origin: int, frames: list[bytes]) -> list[tuple[bytes, int]]:
    """``frames`` as few datagrams as fit ``BATCH_MAX`` each (a lone frame goes as itself),
    each with the number of frames it holds, in order."""
    out: list[tuple[bytes, int]] = []
    parts: list[bytes] = []
    size = 0
    for f in frames:
        if parts and size + len(f) + 4 > BATCH_MAX:
            out.append(_batch(origin, parts))
            parts, size = [], 0
        parts += (_LEN.pack(len(f)), f)
        size += len(f) + 4
    if parts:
        out.append(_batch(origin, parts))
    return out


def _batch(origin: int, parts: list[bytes]) -> tuple[bytes, int]:
    if len(parts) == 2:
        return parts[1], 1
    return HEAD.pack(OP_BATCH, origin, 0, 0, 0) + b"".join(parts), len(parts) // 2


def unbatch(payload: bytes) -> list[bytes]:
    """The frames of an ``OP_BATCH`` payload."""
    out = []
    at, end = 0, len(payload)
    while at < end:
        if at + 4 > end:
            raise FrameError("hand-off batch cut inside a length")
        (n,) = _LEN.unpack_from(payload, at)
        at += 4
        if at + n > end:
            raise FrameError("hand-off batch frame runs past its end")
        out.append(payload[at : at + n])
        at += n
    return out


# -- OP_MSG ------------------------------------------------------------------------------------
def msg_meta(proto: str, ip: str, port: int, src_ip: str, age: float = 0.0) -> str:
    """``age``: seconds the message had waited in the receiving worker's socket queue (its
    ``Server.rx_age``), passed on so that the owner sheds load as that worker would."""
    if age > 0:
        return f"{proto} {ip} {port} {src_ip} {int(age * 1000)}"
    return f"{proto} {ip} {port} {src_ip}"


def parse_msg_meta(meta: str) -> tuple[str, str, int, str, float]:
    """(proto, listener ip, listener port, source ip, queue age in seconds)."""
    got = _META_SEEN.get(meta)
    if got is not None:
        return got
    parts = meta.split(" ")
    if len(parts) not in (4, 5) or not parts[2].isdigit():
        raise FrameError(f"bad message meta {meta!r}")
    age = 0.0
    if len(parts) == 5:
        if not parts[4].isdigit():
            raise FrameError(f"bad message meta {meta!r}")
        age = int(parts[4]) / 1000
    got = parts[0], parts[1], int(parts[2]), parts[3], age
    if len(_META_SEEN) >= 4096:  # one entry per listener and peer address (and age): bounded
        _META_SEEN.clear()
    _META_SEEN[meta] = got
    return got


_META_SEEN: dict[str, tuple[str, str, int, str, float]] = {}


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
