"""Grammar pieces of RFC 3261 §25 as regular expressions (each with its rule name)."""

from __future__ import annotations

import re

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN)
# Method = INVITEm / ... / extension-method (a token)
METHOD_RE = re.compile(TOKEN)
# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)")
# Request-Line = Method SP Request-URI SP SIP-Version CRLF  (exactly one SP between parts)
REQUEST_LINE_RE = re.compile(rf"({TOKEN}) (\S+) (SIP/\d+\.\d+)")
# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
STATUS_LINE_RE = re.compile(r"(SIP/\d+\.\d+) (\d{3}) (.*)")
# header-name = token ; HCOLON = *( SP / HTAB ) ":" SWS
HEADER_NAME_RE = re.compile(TOKEN)
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# LWS folded into the value: CRLF followed by SP/HTAB
FOLD_RE = re.compile(r"\r?\n[ \t]+")
# digits for CSeq, Max-Forwards, Expires, Content-Length (1*DIGIT)
DIGITS_RE = re.compile(r"[0-9]+")
# hostport parts
IPV4_RE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?|[A-Za-z0-9]")
