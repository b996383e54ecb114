"""Bencode, the encoding of rtpengine's ng control protocol (dictionaries, lists, integers and
byte strings). Encoding takes str/bytes/int/list/dict; decoding of what a relay sent goes
through ``decode_untrusted``, which raises ``BencodeError`` on anything malformed."""

from __future__ import annotations

from typing import Any

Value = Any  # int | bytes | list[Value] | dict[bytes, Value]

MAX_DEPTH = 32


class BencodeError(ValueError):
    """The bytes are not one well-formed bencoded value."""


def encode(value: object) -> bytes:
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: object, out: list[bytes]) -> None:
    if isinstance(value, bool):  # before int: bool is an int
        value = int(value)
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str | bytes):
        raw = value.encode() if isinstance(value, str) else value
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        # keys sorted as raw bytes, as the format asks
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        for key, item in items:
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(item, out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


def decode_untrusted(data: bytes) -> Value:
    """The one value ``data`` holds; BencodeError if malformed or followed by junk."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} bytes after the value")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[Value, int]:
    if depth > MAX_DEPTH:
        raise BencodeError("nested too deeply")
    if pos >= len(data):
        raise BencodeError("truncated")
    c = data[pos : pos + 1]
    if c == b"i":
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise BencodeError("unterminated integer")
        try:
            return int(data[pos + 1 : end]), end + 1
        except ValueError:
            raise BencodeError("bad integer") from None
    if c == b"l":
        items: list[Value] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos + 1
    if c == b"d":
        d: dict[bytes, Value] = {}
        pos += 1
        while data[pos : pos + 1] != b"e":
            key, pos = _decode(data, pos, depth + 1)
            if not isinstance(key, bytes):
                raise BencodeError("dictionary key is not a string")
            d[key], pos = _decode(data, pos, depth + 1)
        return d, pos + 1
    if c.isdigit():
        colon = data.find(b":", pos)
        if colon < 0 or not data[pos:colon].isdigit():
            raise BencodeError("bad string length")
        n = int(data[pos:colon])
        end = colon + 1 + n
        if end > len(data):
            raise BencodeError("truncated string")
        return data[colon + 1 : end], end
    raise BencodeError(f"unexpected byte {c!r} at {pos}")
