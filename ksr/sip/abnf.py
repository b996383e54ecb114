"""Grammar pieces of RFC 3261 §25 as regular expressions and character sets (each with its
rule name), plus the one number reader every header parser shares."""

from __future__ import annotations

import re
from typing import Final

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~"
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN)
# Method = INVITEm / ... / extension-method (a token)
METHOD_RE = re.compile(TOKEN)
# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT  (DIGIT is ASCII only: no \d)
SIP_VERSION_RE: Final = re.compile(r"SIP/([0-9]+)\.([0-9]+)")
# Request-Line = Method SP Request-URI SP SIP-Version CRLF  (exactly one SP between parts)
REQUEST_LINE_RE = re.compile(rf"({TOKEN}) ([^\s]+) (SIP/[0-9]+\.[0-9]+)")
# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
STATUS_LINE_RE = re.compile(r"(SIP/[0-9]+\.[0-9]+) ([0-9]{3}) (.*)")
# header-name = token ; HCOLON = *( SP / HTAB ) ":" SWS
HEADER_NAME_RE = re.compile(TOKEN)
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# LWS folded into the value: CRLF followed by SP/HTAB
FOLD_RE = re.compile(r"\r?\n[ \t]+")
# digits for CSeq, Max-Forwards, Expires, Content-Length (1*DIGIT)
DIGITS_RE = re.compile(r"[0-9]+")
# hostport parts
IPV4_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?|[A-Za-z0-9]")


# The methods every message names (start line, CSeq): tokens known without reading them
# (a set lookup; strip with the 72 token characters costs ~1,400 instructions compiled)
KNOWN_TOKENS: Final = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "PRACK", "UPDATE", "INFO")
    + ("SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH")
)


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 token (no regex: strip is a C loop)."""
    return text in KNOWN_TOKENS or (bool(text) and not text.strip(TOKEN_CHARS))


def uint(text: str, limit: int) -> int | None:
    """``text`` as a number of ASCII digits not above ``limit``, else None.

    Leading zeros are allowed ("0068"); the length is checked before ``int`` so a
    10,000-digit value costs nothing (and never hits Python's int-size guard).
    """
    n = len(text)
    if 0 < n <= 18:
        # the usual value (a port, a CSeq, a length): digits summed in a native loop, ~150
        # instructions compiled against ~850 for isdigit + isascii + int(); 18 digits stay
        # within a short int
        v = 0
        for ch in text:
            d = ord(ch) - 48
            if d < 0 or d > 9:
                return None
            v = v * 10 + d
        return v if v <= limit else None
    if not text.isdigit() or not text.isascii():  # "".isdigit() is False
        return None
    if len(text) > 20:
        text = text.lstrip("0") or "0"
        if len(text) > 20:
            return None
    v = int(text)
    return v if v <= limit else None
