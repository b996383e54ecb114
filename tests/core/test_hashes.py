"""Kamailio's core_hash (ksr/core/hashes.py, compiled with mypyc): the dialog slot numbers
Kamailio recomputes from a stored Call-ID, checked against its C algorithm."""

from __future__ import annotations

import random

from ksr.core.hashes import core_hash

M = 0xFFFFFFFF


def reference(text: str) -> int:
    """Kamailio's core_hash as written in C: words of four (signed) chars, then the tail."""
    b = [x - 256 if x >= 128 else x for x in text.encode("utf-8", "surrogateescape")]
    h, i = 0, 0
    while i + 4 <= len(b):
        v = ((b[i] << 24) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3]) & M
        h = (h + (v ^ (v >> 3))) & M
        i += 4
    v = 0
    for x in b[i:]:
        v = ((v << 8) + x) & M
    h = (h + (v ^ (v >> 3))) & M
    return ((h + (h >> 11)) + ((h >> 13) + (h >> 23))) & M


def test_known_values() -> None:
    assert core_hash("") == 0
    assert core_hash("abcd") == 1834959896
    assert core_hash("1-12345@127.0.0.1") == 3653088559
    assert core_hash("1-12345@127.0.0.1", 4096) == 1327
    assert core_hash("café-ü@h", 4096) == 2229  # bytes above 127 are negative chars in C


def test_every_length_and_non_ascii_as_the_c_code() -> None:
    rnd = random.Random(7)
    alphabet = "abcXYZ019-@.~" + "éü\u20ac"
    for n in range(0, 48):
        for _ in range(5):
            text = "".join(rnd.choice(alphabet) for _ in range(n))
            assert core_hash(text) == reference(text), text
            assert core_hash(text, 4096) == reference(text) & 4095
