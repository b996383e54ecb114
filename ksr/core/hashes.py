"""Kamailio's core string hash (``core_hash``): the slot numbers Kamailio derives from a Call-ID.

A dialog row names its slot (``hash_entry``); Kamailio recomputes the slot from the Call-ID when
it loads a dialog and refuses a row whose slot differs, so ksr numbers slots the same way.
Arithmetic is on 32-bit unsigned words over the bytes as C's (signed) ``char``.
"""

from __future__ import annotations

from typing import Final

# Final: compiled, the constant is inlined; a plain module name is a globals lookup per use
# (two per four bytes of the Call-ID)
_M: Final = 0xFFFFFFFF


def core_hash(text: str, size: int = 0) -> int:
    """The hash of ``text``; with ``size`` (a power of two) the slot index in a table of that
    many slots."""
    b = [x - 256 if x >= 128 else x for x in text.encode("utf-8", "surrogateescape")]
    h = 0
    n = len(b)
    i = 0
    while i + 4 <= n:
        v = ((b[i] << 24) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3]) & _M
        h = (h + (v ^ (v >> 3))) & _M
        i += 4
    v = 0
    while i < n:
        v = ((v << 8) + b[i]) & _M
        i += 1
    h = (h + (v ^ (v >> 3))) & _M
    h = ((h + (h >> 11)) + ((h >> 13) + (h >> 23))) & _M
    return h & (size - 1) if size else h
