"""The one number reader every header parser shares (``abnf.uint``): ASCII digits only, the
limit inclusive, any length of leading zeros, no sign, no space."""

from __future__ import annotations

import pytest

from ksr.sip.abnf import uint


@pytest.mark.parametrize(
    ("text", "limit", "want"),
    [
        ("0", 10, 0),
        ("5060", 65535, 5060),
        ("65535", 65535, 65535),
        ("65536", 65535, None),
        ("0068", 255, 68),
        ("4294967295", 2**32 - 1, 2**32 - 1),
        ("4294967296", 2**32 - 1, None),
        ("999999999999999999", 10**18, 999999999999999999),  # 18 digits: the native loop
        ("1000000000000000000", 10**19, 10**18),  # 19 digits: int()
        ("0" * 10_000 + "70", 255, 70),
        ("9" * 10_000, 2**63, None),
        ("", 10, None),
        ("-1", 10, None),
        ("+1", 10, None),
        (" 1", 10, None),
        ("1 ", 10, None),
        ("1a", 10, None),
        ("/", 10, None),
        (":", 10, None),
        ("\u0661", 10, None),  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit, not ASCII
        ("\u00b2", 10, None),  # SUPERSCRIPT TWO
        ("1\u0661", 100, None),
    ],
)
def test_uint(text: str, limit: int, want: int | None) -> None:
    assert uint(text, limit) == want
