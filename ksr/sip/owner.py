"""Which worker process owns a SIP message, read from its bytes without a full parse.

With ``ksr run -n N`` every message of a call (initial request, retransmissions, CANCEL, ACK,
in-dialog requests from either side, replies) must be handled by the one worker that holds the
call's transactions and dialog. The rule (docs/workers.md):

- a reply whose top Via carries ``;ksrw=W`` (set by the worker that sent the request) goes to W;
- a REGISTER stays where it arrived: it belongs to no call, and the location table it changes
  is shared by every worker (docs/workers.md), so a hand-off would only cost;
- anything else goes to ``crc32(Call-ID) % N``: every message of a call carries the same Call-ID.

CRC32 rather than ``hash()``: every worker process must compute the same owner.
"""

from __future__ import annotations

import re
import zlib

VIA_MARK = "ksrw"  # the Via parameter naming the worker that sent a request

_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)
_FIRST_VIA = re.compile(rb"^(?:via|v)[ \t]*:([^\r\n]*)", re.I | re.M)
_MARK = re.compile(rb";[ \t]*ksrw[ \t]*=[ \t]*(\d{1,4})", re.I)


def _headers(data: bytes) -> bytes:
    """The start line and headers (the body may hold anything, e.g. a message/sipfrag)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    return data if end < 0 else data[: end + 2]


def call_id_owner(call_id: bytes | str, workers: int) -> int:
    raw = call_id.encode() if isinstance(call_id, str) else call_id
    return zlib.crc32(raw.strip()) % workers


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
    return zlib.crc32(value) % workers


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
    return zlib.crc32(m.group(1)) % workers
