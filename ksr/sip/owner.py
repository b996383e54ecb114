"""Which worker process owns a SIP message, read from its bytes without a full parse.

With ``ksr run -n N`` every message of a call (initial request, retransmissions, CANCEL, ACK,
in-dialog requests from either side, replies) must be handled by the one worker that holds the
call's transactions and dialog. The rule (docs/workers.md):

- a reply whose top Via carries ``;ksrw=W`` (set by the worker that sent the request) goes to W;
- a REGISTER stays where it arrived: it belongs to no call, and the location table it changes
  is shared by every worker (docs/workers.md), so a hand-off would only cost;
- anything else goes to ``call_id_hash(Call-ID) % N``: every message of a call carries the same
  Call-ID.

``call_id_hash`` is Adler-32 of at most the first ``HASH_BYTES`` bytes of the value, mixed by one
multiplication (Adler-32's low bits alone follow the sum of the bytes: Call-IDs that differ in
one digit would all land on one of two workers): the same in every worker process (``hash()``
is not), cheap here (zlib) and simple enough for a classic BPF program to compute in the kernel,
which then delivers each datagram to its owner at once (ksr/transport/steer.py).
"""

from __future__ import annotations

import re
import zlib
from typing import Final

from .errors import RemoteProtocolError
from .message import Message, Request

VIA_MARK: Final = "ksrw"  # the Via parameter naming the worker that sent a request
HASH_BYTES = 22  # bytes of the Call-ID the owner depends on (the kernel's program reads as many)
ADLER_MOD = 65521  # Adler-32's modulus
MIX = 0x9E3779B1  # 2**32 / the golden ratio: the product's high bits depend on every input bit

_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)
_FIRST_VIA = re.compile(rb"^(?:via|v)[ \t]*:([^\r\n]*)", re.I | re.M)
_MARK = re.compile(rb";[ \t]*ksrw[ \t]*=[ \t]*(\d{1,4})", re.I)


def _headers(data: bytes) -> bytes:
    """The start line and headers (the body may hold anything, e.g. a message/sipfrag)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    return data if end < 0 else data[: end + 2]


def call_id_hash(value: bytes) -> int:
    """The owner hash of a Call-ID value (without surrounding blanks)."""
    return ((zlib.adler32(value[:HASH_BYTES]) * MIX) & 0xFFFFFFFF) >> 16


def call_id_owner(call_id: bytes | str, workers: int) -> int:
    raw = call_id.encode() if isinstance(call_id, str) else call_id
    return call_id_hash(raw.strip()) % workers


def message_owner(data: bytes, workers: int) -> int | None:
    """The owning worker index, or None: the worker that received it handles it (a REGISTER,
    or a message without a readable Call-ID, which the parser rejects).

    Runs for every message a worker receives, so the usual spellings (``Via:``, ``Call-ID:``
    at the start of a line, no compact form before them) are found with ``bytes.find``
    (~1 µs); anything else takes the regular expressions (~5-8 µs), with the same answers."""
    if data.startswith(b"REGISTER "):
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return _owner_slow(data, workers)
    if data.startswith(b"SIP/"):
        at = data.find(b"\r\nVia:", 0, end)
        if at < 0 or data.find(b"\nv", 0, at) >= 0 or data.find(b"\nV", 0, at) >= 0:
            return _owner_slow(data, workers)  # a compact or odd Via first
        stop = data.find(b"\r", at + 6)
        top = data[at + 6 : stop if 0 <= stop <= end else end].split(b",", 1)[0]
        if b"ksrw" in top or b"KSRW" in top or b"Ksrw" in top:
            m = _MARK.search(top)
            if m is not None and int(m.group(1)) < workers:
                return int(m.group(1))
        elif b"ksrw" in top.lower():
            return _owner_slow(data, workers)
    at = data.find(b"\r\nCall-ID:", 0, end)
    if at < 0:
        return _owner_slow(data, workers)
    stop = data.find(b"\r", at + 10)
    value = data[at + 10 : stop if 0 <= stop <= end else end].strip(b" \t")
    if not value:
        return None
    return call_id_hash(value) % workers


def parsed_owner(msg: Message, workers: int) -> int | None:
    """``message_owner`` of a message already parsed: the same rule and the same answers,
    read from its parsed top Via and Call-ID (no search of the bytes again)."""
    if isinstance(msg, Request):
        if msg.method == "REGISTER":
            return None
    else:
        try:
            mark = msg.top_via.params.get(VIA_MARK)
        except RemoteProtocolError:
            mark = None
        if mark is not None and 0 < len(mark) <= 4 and mark.isdigit() and int(mark) < workers:
            return int(mark)
    try:
        call_id = msg.call_id
    except RemoteProtocolError:
        return None
    if not call_id:
        return None
    return call_id_hash(call_id.encode("utf-8", "surrogateescape")) % workers


def _owner_slow(data: bytes, workers: int) -> int | None:
    head = _headers(data)
    if head.startswith(b"SIP/"):
        via = _FIRST_VIA.search(head)
        if via is not None:
            m = _MARK.search(via.group(1).split(b",", 1)[0])
            if m is not None and int(m.group(1)) < workers:
                return int(m.group(1))
    m = _CALL_ID.search(head)
    if m is None or not m.group(1):
        return None
    return call_id_hash(m.group(1)) % workers
