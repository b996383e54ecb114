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
    # the bytes read in place (compiled: a native int per index), each as C's signed char:
    # no list of boxed ints made per Call-ID
    data = text.encode("utf-8", "surrogateescape")
    h = 0
    n = len(data)
    i = 0
    while i + 4 <= n:
        b0 = data[i]
        b1 = data[i + 1]
        b2 = data[i + 2]
        b3 = data[i + 3]
        if b0 >= 128:
            b0 -= 256
        if b1 >= 128:
            b1 -= 256
        if b2 >= 128:
            b2 -= 256
        if b3 >= 128:
            b3 -= 256
        v = ((b0 << 24) + (b1 << 16) + (b2 << 8) + b3) & _M
        h = (h + (v ^ (v >> 3))) & _M
        i += 4
    v = 0
    while i < n:
        b = data[i]
        if b >= 128:
            b -= 256
        v = ((v << 8) + b) & _M
        i += 1
    h = (h + (v ^ (v >> 3))) & _M
    h = ((h + (h >> 11)) + ((h >> 13) + (h >> 23))) & _M
    return h & (size - 1) if size else h
