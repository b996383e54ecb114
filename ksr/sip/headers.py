"""Header names and the small parsers for the header values a SIP server needs.

Values are parsed only when asked for; the message keeps the raw text of every header so a
proxy forwards what it does not understand byte for byte.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Final

from .abnf import TOKEN_RE, is_token, uint
from .errors import RemoteProtocolError
from .hostport import format_hostport
from .uri import Uri, parse_uri

# RFC 3261 §7.3.3 and later RFCs: compact form -> full name (lower case keys).
COMPACT_FORMS: Final[dict[str, str]] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "y": "identity",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
}

# Header names as usually written -> key, so the parser skips validating and lower-casing them.
# The keys are interned: the same objects as the literals compiled code compares them with
# (``h.key == "via"`` is then a pointer test, a dict lookup by a key needs no string compare).
KNOWN_KEYS: Final[dict[str, str]] = {
    n: sys.intern(n.lower())
    for n in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Content-Length",
        "Content-Type",
        "Route",
        "Record-Route",
        "Expires",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "User-Agent",
        "Server",
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Event",
        "Subscription-State",
        "Accept",
        "Date",
        "Path",
        "Session-Expires",
        "Min-SE",
        "P-Asserted-Identity",
        "Privacy",
        "Allow-Events",
        "Content-Disposition",
        "Content-Encoding",
        "Reason",
        "Warning",
        "Unsupported",
        "Subject",
        "Organization",
        "Timestamp",
        "Refer-To",
        "Referred-By",
    )
}
KNOWN_KEYS.update(
    {
        "Call-Id": "call-id",
        "Cseq": "cseq",
        "Max-forwards": "max-forwards",
        "Content-length": "content-length",
        "Content-type": "content-type",
        "Record-route": "record-route",
        "User-agent": "user-agent",
    }
)
KNOWN_KEYS.update({k: v for k, v in COMPACT_FORMS.items()})
KNOWN_KEYS.update({k.upper(): v for k, v in COMPACT_FORMS.items()})

_BAD_HOST_CHARS: Final = re.compile(r'[ \t<>"]')

# Headers that may appear once only (RFC 3261 §7.3.1: everything else may be a list).
SINGLE_HEADERS = frozenset(
    {"call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type", "expires"}
)


# Every spelling above, and every key itself, -> key: header_key's lookup without lower().
_KEY_OF: Final[dict[str, str]] = {
    **KNOWN_KEYS,
    **{k: k for k in KNOWN_KEYS.values()},
    **COMPACT_FORMS,
}


def header_key(name: str) -> str:
    """Canonical lower-case full name of a header name as written (compact forms expanded)."""
    key = _KEY_OF.get(name)
    if key is not None:
        return key
    low = name.lower()
    return COMPACT_FORMS.get(low, low)


def split_commas(value: str) -> list[str]:
    """Split a header value at the commas that separate list elements.

    Commas inside quoted strings and inside <...> do not split.
    """
    if "," not in value:
        return [value.strip()]
    if '"' not in value and "<" not in value:
        # nothing protects a comma (a Via list as sipp writes it): every one splits
        return [part.strip() for part in value.split(",")]
    # Only quotes, backslashes, angle brackets and commas matter: visit those, not every
    # character (a Python loop over a 200-character Record-Route list is ~10 µs).
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    skip = -1  # the character after a backslash inside quotes
    for m in _LIST_SPECIALS.finditer(value):
        i = m.start()
        if i == skip:
            continue
        ch = value[i]
        if quoted:
            if ch == "\\":
                skip = i + 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            if depth:
                depth -= 1
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
    out.append(value[start:].strip())
    return out


_LIST_SPECIALS = re.compile(r'[",<>\\]')


def parse_params(text: str, strict: bool = False) -> dict[str, str | None]:
    """Parse ``;a=b;c`` into an ordered dict (names lower-cased, values kept).

    With ``strict`` an empty parameter (``;;``) or a name that is not a token is an error.
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    for part in _split_semis(text):
        part = part.strip()
        if not part:
            if strict:
                raise RemoteProtocolError("Empty parameter")
            continue
        name, eq, val = part.partition("=")
        name = name.strip()
        if strict and not TOKEN_RE.fullmatch(name):
            raise RemoteProtocolError(f"Bad parameter name {name!r}")
        params[name.lower()] = val.strip() if eq else None
        if strict and eq and not val.strip():
            raise RemoteProtocolError(f"Empty value for parameter {name!r}")
    return params


def _split_semis(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    out: list[str] = []
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == ";":
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(slots=True, init=False)
class NameAddr:
    """A From/To/Contact/Route value: ``"Display" <uri>;params`` or ``uri;params``."""

    display: str | None
    uri_text: str
    params: dict[str, str | None] = field(default_factory=dict)
    bracketed: bool = True
    _uri: Uri | None = None

    # init=False and __init__ written out: mypyc compiles it (the generated one runs as
    # Python code, ~2,000 instructions per object)
    def __init__(
        self,
        display: str | None,
        uri_text: str,
        params: dict[str, str | None] | None = None,
        bracketed: bool = True,
        _uri: Uri | None = None,
    ) -> None:
        self.display = display
        self.uri_text = uri_text
        self.params = {} if params is None else params
        self.bracketed = bracketed
        self._uri = _uri

    @property
    def uri(self) -> Uri:
        if self._uri is None:
            self._uri = parse_uri(self.uri_text)
        return self._uri

    def share_uri(self, other: NameAddr) -> None:
        """Take ``other``'s parsed URI if this one is not parsed yet and both carry the same
        URI text (a REGISTER's To and From): one parse serves both. Parsed URIs are never
        changed in place, so sharing one is safe."""
        if self._uri is None and other.uri_text == self.uri_text:
            self._uri = other.uri

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        disp = f"{self.display} " if self.display else ""
        return f"{disp}<{self.uri_text}>{format_params(self.params)}"


def parse_name_addr(value: str, strict: bool = False) -> NameAddr:
    """Parse a name-addr or addr-spec with header parameters (RFC 3261 §20.10, §25.1)."""
    if not strict:
        usual = _usual_name_addr(value)
        if usual is not None:
            return usual
    v = value.strip()
    if not v:
        raise RemoteProtocolError("Empty address")
    display: str | None = None
    if v.startswith('"'):
        i = 1
        while i < len(v):
            if v[i] == "\\":
                i += 2
                continue
            if v[i] == '"':
                break
            i += 1
        else:
            raise RemoteProtocolError("Unterminated quoted display name")
        display = v[: i + 1]
        v = v[i + 1 :].lstrip()
        if not v.startswith("<"):
            raise RemoteProtocolError("Quoted display name without <addr-spec>")
    lt = v.find("<")
    if lt >= 0:
        gt = v.find(">", lt)
        if gt < 0:
            raise RemoteProtocolError("Unbalanced < in address")
        if display is None and lt > 0:
            display = v[:lt].strip()
            if strict and display:
                # unquoted display name: *(token LWS)
                for word in display.split():
                    if not TOKEN_RE.fullmatch(word):
                        raise RemoteProtocolError("Display name must be quoted")
        uri_text = v[lt + 1 : gt]
        if strict and (uri_text != uri_text.strip() or " " in uri_text or "\t" in uri_text):
            raise RemoteProtocolError("Whitespace inside <addr-spec>")
        rest = v[gt + 1 :].strip()
        if rest and not rest.startswith(";"):
            raise RemoteProtocolError("Garbage after address")
        params = parse_params(rest[1:], strict) if rest else {}
        return NameAddr(display or None, uri_text, params, True)
    # addr-spec form: URI params and header params cannot be told apart, so everything
    # after the first ';' is a header parameter (RFC 3261 §20.10).
    if strict and ("?" in v or "," in v):
        raise RemoteProtocolError("addr-spec with '?' or ',' must be in <>")
    uri_text, semi, rest = v.partition(";")
    uri_text = uri_text.strip()
    if strict and (" " in uri_text or not uri_text):
        raise RemoteProtocolError("Bad addr-spec")
    return NameAddr(None, uri_text, parse_params(rest, strict) if semi else {}, False)


def _usual_name_addr(value: str) -> NameAddr | None:
    """``parse_name_addr(value)`` (not strict) for the From/To as user agents write them,
    ``[display] <uri>`` then nothing or one ``;tag=``, without its string walk, splits and
    parameter dict loop; None for any other form, which the full parse reads. Same result by
    construction: the display is the full parse's (a quoted one without backslashes, or the
    text before the first '<', which cannot start with '"' or whitespace here), the URI lies
    between that '<' and the next '>', and a parameter text without a second ';' is one part
    whose name is exactly ``tag``. Compiled, only primitives: no str method with an end
    index (a generic call, ~1,000 instructions), no str ordering (a rich compare)."""
    n = len(value)
    if n == 0:
        return None
    c = ord(value[0])
    if c == 34:
        # "display" <uri>: the closing quote with no backslash before it, one SP or none
        end = value.find('"', 1)
        if end < 0:
            return None
        backslash = value.find("\\", 1)
        if 0 <= backslash < end:
            return None
        lt = end + 1
        if lt < n and value[lt] == " ":
            lt += 1
        if lt >= n or value[lt] != "<":
            return None
        display: str | None = value[: end + 1]
    elif 32 < c < 127:  # not whitespace: the full parse's strip() leaves it first
        lt = value.find("<")
        if lt < 0:
            return None  # addr-spec form
        display = value[:lt].strip() or None
    else:
        return None
    gt = value.find(">", lt)
    if gt < 0:
        return None
    params: dict[str, str | None] = {}
    if gt + 1 < n:
        # ";tag=" right after '>' and no other ';' (finds: no slice for the rest)
        if value.find(";tag=", gt) != gt + 1 or value.find(";", gt + 2) >= 0:
            return None
        params["tag"] = value[gt + 6 :].strip()
    return NameAddr(display, value[lt + 1 : gt], params, True)


@dataclass(slots=True, init=False)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;params``."""

    protocol: str  # e.g. "SIP/2.0"
    transport: str  # upper case, e.g. "UDP"
    host: str
    port: int | None
    params: dict[str, str | None]

    # init=False and __init__ written out: mypyc compiles it (the generated one runs as Python)
    def __init__(
        self,
        protocol: str,
        transport: str,
        host: str,
        port: int | None,
        params: dict[str, str | None],
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        hp = format_hostport(self.host, self.port)
        return f"{self.protocol}/{self.transport} {hp}{format_params(self.params)}"


# The transports a Via names as usually written (upper case): the fast path of parse_via
_TRANSPORTS: Final = frozenset(("UDP", "TCP", "TLS", "SCTP", "WS", "WSS"))


def parse_via(value: str, strict: bool = False) -> Via:
    """Parse a single Via value (RFC 3261 §20.42); LWS is allowed around '/'."""
    if value.startswith("SIP/2.0/"):
        # the usual "SIP/2.0/UDP sent-by;params": the sent-protocol read by its one SP
        sp = value.find(" ", 8)
        if sp > 8:
            transport = value[8:sp]
            if transport in _TRANSPORTS:
                return _via_rest("SIP/2.0", transport, value[sp + 1 :].strip(), strict)
    sent, _, rest = _split_via(value)
    parts = [p.strip() for p in sent.split("/")]
    if len(parts) != 3 or not all(parts):
        raise RemoteProtocolError("Bad Via sent-protocol")
    name, version, transport = parts
    if name.upper() != "SIP":
        raise RemoteProtocolError("Via protocol is not SIP")
    return _via_rest("SIP/" + version, transport.upper(), rest.strip(), strict)


def _via_rest(protocol: str, transport: str, rest: str, strict: bool) -> Via:
    # sent-by *( SEMI via-params ), stripped
    hostport, semi, ptext = rest.partition(";")
    host, port = split_hostport(hostport.strip())
    if not semi:
        params: dict[str, str | None] = {}
    elif ptext.startswith("branch=") and ptext.find(";", 7) < 0 and (branch := ptext[7:].strip()):
        # a lone branch (a UA's Via, ours on replies): parse_params' one part, without its
        # split, partition and lower (ptext's right end is stripped, it has no second ';')
        params = {"branch": branch}
    else:
        params = parse_params(ptext, strict)
    return Via(protocol, transport, host, port, params)


def _split_via(value: str) -> tuple[str, str, str]:
    # sent-protocol is three slash-separated tokens with optional LWS; the sent-by follows
    # after whitespace once the third token has been read.
    v = value.strip()
    slashes = 0
    i = 0
    n = len(v)
    while i < n and slashes < 2:
        if v[i] == "/":
            slashes += 1
        i += 1
    while i < n and v[i] in " \t":
        i += 1
    while i < n and v[i] not in " \t":
        i += 1
    if slashes < 2:
        raise RemoteProtocolError("Bad Via sent-protocol")
    return v[:i], "", v[i:]


def split_hostport(hp: str) -> tuple[str, int | None]:
    if not hp:
        raise RemoteProtocolError("Missing host")
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0:
            raise RemoteProtocolError("Bad IPv6 reference")
        host = hp[1:end]
        rest = hp[end + 1 :]
        if rest and not rest.startswith(":"):
            raise RemoteProtocolError("Bad host:port")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = hp.partition(":")
    if port_text:
        port = uint(port_text, 65535)
        if port is None:
            raise RemoteProtocolError(f"Bad port {port_text[:20]!r}")
        return host, port
    if not host or _BAD_HOST_CHARS.search(host):
        raise RemoteProtocolError("Bad host")
    return host, None


@dataclass(slots=True, frozen=True, init=False)
class CSeq:
    number: int
    method: str

    # written out so mypyc compiles it (the generated one runs as Python code); frozen:
    # object.__setattr__, as the generated one does
    def __init__(self, number: int, method: str) -> None:
        object.__setattr__(self, "number", number)
        object.__setattr__(self, "method", method)


def parse_cseq(value: str) -> CSeq:
    """CSeq = 1*DIGIT LWS Method; the number must fit 32 bits unsigned (RFC 3261 §8.1.1.5)."""
    parts = value.split()
    if len(parts) != 2 or not is_token(parts[1]):
        raise RemoteProtocolError("Bad CSeq")
    number = uint(parts[0], 2**32 - 1)
    if number is None:
        raise RemoteProtocolError("CSeq number is illegal")
    return CSeq(number, parts[1])
