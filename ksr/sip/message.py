"""SIP messages: parse bytes into a Request or Response and serialize them back.

The parser is lazy: it splits the start line and the header lines, keeps each header's raw
text and parses a header's value only when someone asks for it (``top_via``, ``cseq``...).
A header nobody touched is written back exactly as it arrived.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .abnf import SIP_VERSION_RE, is_token, uint
from .errors import LocalProtocolError, RemoteProtocolError
from .headers import (
    COMPACT_FORMS,
    KNOWN_KEYS,
    CSeq,
    NameAddr,
    Via,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_commas,
)
from .uri import Uri, parse_uri

if TYPE_CHECKING:
    from .received import ViaFix

CRLF: Final = "\r\n"
MAX_MESSAGE_SIZE: Final = 65535


class Header:
    """One header line. ``raw`` is the original text (None once changed); ``key`` is the
    header's canonical name, worked out from ``name`` unless the caller has it already."""

    __slots__ = ("name", "key", "value", "raw")

    def __init__(
        self, name: str, value: str, raw: str | None = None, key: str | None = None
    ) -> None:
        self.name = name
        self.key = header_key(name) if key is None else key
        self.value = value
        self.raw = raw

    def line(self) -> str:
        return self.raw if self.raw is not None else f"{self.name}: {self.value}"

    def __repr__(self) -> str:
        return f"Header({self.name!r}, {self.value!r})"


class Message:
    """Common part of requests and responses."""

    __slots__ = ("headers", "body", "version", "_cache", "raw")
    is_request: bool = False

    def __init__(self, headers: list[Header], body: bytes, version: str = "SIP/2.0") -> None:
        self.headers = headers
        self.body = body
        self.version = version
        self._cache: dict[str, Any] = {}
        self.raw: bytes | None = None  # bytes as received, if parsed

    # -- reading headers -------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        """Value of the first header with this name (any form), or None."""
        key = header_key(name)
        for h in self.headers:
            if h.key == key:
                return h.value
        return None

    def first(self, key: str) -> Header | None:
        """The first header whose ``key`` is ``key`` (the canonical name: lower case, full
        form, e.g. ``"max-forwards"``), or None. Compiled: a module's own loop over
        ``headers`` runs as interpreted code."""
        for h in self.headers:
            if h.key == key:
                return h
        return None

    def get_all(self, name: str) -> list[str]:
        key = header_key(name)
        return [h.value for h in self.headers if h.key == key]

    def get_values(self, name: str) -> list[str]:
        """All comma-separated values of all headers with this name, in order."""
        out: list[str] = []
        for v in self.get_all(name):
            out.extend(x for x in split_commas(v) if x)
        return out

    def has(self, name: str) -> bool:
        key = header_key(name)
        return any(h.key == key for h in self.headers)

    def count(self, name: str) -> int:
        key = header_key(name)
        return sum(1 for h in self.headers if h.key == key)

    # -- changing headers ------------------------------------------------------------------
    def forget_parsed(self, key: str | None = None) -> None:
        """After changing ``headers`` in place: drop what was parsed from the headers named
        ``key`` (all headers when None), so the next read parses the new values."""
        if key is None:
            self._cache.clear()
        else:
            self._cache.pop(key, None)

    def _changed(self, key: str) -> None:
        self._cache.pop(key, None)
        self.raw = None

    def insert_header(self, name: str, value: str, index: int = 0) -> None:
        self.headers.insert(index, Header(name, value))
        self._changed(header_key(name))

    def append_header(self, name: str, value: str) -> None:
        self.headers.append(Header(name, value))
        self._changed(header_key(name))

    def remove_headers(self, name: str) -> int:
        key = header_key(name)
        before = len(self.headers)
        self.headers = [h for h in self.headers if h.key != key]
        self._changed(key)
        return before - len(self.headers)

    def set_header(self, name: str, value: str) -> None:
        """Replace the first header of this name (or append one) and drop the others."""
        key = header_key(name)
        for i, h in enumerate(self.headers):
            if h.key == key:
                self.headers[i] = Header(h.name, value)
                self.headers = [x for j, x in enumerate(self.headers) if x.key != key or j == i]
                self._changed(key)
                return
        self.append_header(name, value)

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        self.body = body
        if content_type is not None:
            if content_type:
                self.set_header("Content-Type", content_type)
            else:
                self.remove_headers("content-type")
        self.set_header("Content-Length", str(len(body)))

    # -- values others derive from the message, kept with it --------------------------------
    def memo(self, name: str) -> Any:
        """A value stored with ``set_memo`` (None if none): facts a module derives once per
        message (tm's transaction key) instead of once per KSR call."""
        return self._cache.get("memo:" + name)

    def set_memo(self, name: str, value: Any) -> None:
        self._cache["memo:" + name] = value

    # -- parsed views (cached) -------------------------------------------------------------
    # The lookups below use get(), not try/except KeyError: compiled, a KeyError raised
    # and caught costs ~2,000 instructions (a traceback object), and every message misses
    # each key once. The values stored are never None.
    def _value(self, key: str) -> str:
        h = self.first(key)  # key is canonical: no header_key lookup
        if h is None:
            raise RemoteProtocolError(f"Missing {key} header")
        return h.value

    @property
    def vias(self) -> list[Via]:
        cache = self._cache
        cached = cache.get("via*")
        if cached is not None:
            return cached
        vias = [parse_via(v) for v in self.get_values("via")]
        top = cache.get("via")
        if top is not None and vias:
            vias[0] = top  # the object top_via handed out: one parse, shared
        elif vias:
            first = self.get("via")
            if first and not first.startswith(","):  # vias[0] is what top_via would parse
                cache["via"] = vias[0]
        cache["via*"] = vias
        return vias

    @property
    def top_via(self) -> Via:
        cached = self._cache.get("via")
        if cached is not None:
            return cached
        h = self.first("via")
        if h is None:
            raise RemoteProtocolError("Missing Via header")
        raw = h.value
        # one value (the usual Via line): split_commas would strip it into a list of one
        via = parse_via(split_commas(raw)[0] if "," in raw else raw.strip())
        self._cache["via"] = via
        return via

    @property
    def call_id(self) -> str:
        h = self.first("call-id")
        if h is None:
            raise RemoteProtocolError("Missing Call-ID header")
        return h.value

    # Each parser called by name (compiled: a native call), not passed in as a value (a
    # generic call through the function object's wrapper, ~250 instructions more).
    @property
    def cseq(self) -> CSeq:
        cached: CSeq | None = self._cache.get("cseq")
        if cached is None:
            cached = self._cache["cseq"] = parse_cseq(self._value("cseq"))
        return cached

    @property
    def from_(self) -> NameAddr:
        cached: NameAddr | None = self._cache.get("from")
        if cached is None:
            cached = self._cache["from"] = parse_name_addr(self._value("from"))
        return cached

    @property
    def to(self) -> NameAddr:
        cached: NameAddr | None = self._cache.get("to")
        if cached is None:
            cached = self._cache["to"] = parse_name_addr(self._value("to"))
        return cached

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    def content_length(self) -> int:
        return len(self.body)

    # -- serializing -----------------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        # Header.line() inlined: this runs for every message sent, over every header
        lines = [self.start_line()]
        lines += [h.raw if h.raw is not None else f"{h.name}: {h.value}" for h in self.headers]
        lines += ("", "")
        head = CRLF.join(lines).encode("utf-8", "surrogateescape")
        return head + self.body if self.body else head

    def copy(self) -> Message:
        raise NotImplementedError


class Request(Message):
    __slots__ = ("method", "uri", "via_fix")
    is_request = True

    def __init__(
        self,
        method: str,
        uri: str,
        headers: list[Header] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers if headers is not None else [], body, version)
        self.method = method
        self.uri = uri
        # received=/rport= for copies that leave (ksr.sip.received); the headers stay as received
        self.via_fix: ViaFix | None = None

    @property
    def parsed_uri(self) -> Uri:
        cached = self._cache.get("ruri")
        if cached is not None and cached[0] == self.uri:
            return cached[1]
        parsed = parse_uri(self.uri)
        self._cache["ruri"] = (self.uri, parsed)
        return parsed

    def set_uri(self, uri: str) -> None:
        self.uri = uri
        self.raw = None

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def copy(self) -> Request:
        return Request(
            self.method,
            self.uri,
            [_copy_header(h) for h in self.headers],
            self.body,
            self.version,
        )

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("status", "reason")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: list[Header] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers if headers is not None else [], body, version)
        self.status = status
        self.reason = reason

    @property
    def method(self) -> str:
        return self.cseq.method

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def copy(self) -> Response:
        return Response(
            self.status,
            self.reason,
            [_copy_header(h) for h in self.headers],
            self.body,
            self.version,
        )

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _copy_header(h: Header) -> Header:
    return Header(h.name, h.value, h.raw, h.key)


# ------------------------------------------------------------------------------------------
# Parsing


def find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Index of the blank line that ends the header section and the length of that
    separator, or (-1, 0) when it has not arrived yet. The earliest blank line wins,
    whether it is CRLF CRLF or LF LF (RFC 3261 §7.5 lets senders use bare LF)."""
    idx = data.find(b"\r\n\r\n", start)
    if idx >= 0:
        lf = data.find(b"\n\n", start, idx)
        return (lf, 2) if lf >= 0 else (idx, 4)
    idx = data.find(b"\n\n", start)
    if idx >= 0:
        return idx, 2
    return -1, 0


def parse_message_untrusted(
    data: bytes, *, datagram: bool = True, max_size: int = MAX_MESSAGE_SIZE
) -> Request | Response:
    """Parse one SIP message from hostile bytes.

    ``datagram``: the bytes are a whole UDP datagram, so a missing Content-Length means the
    body runs to the end and octets beyond Content-Length are ignored (RFC 3261 §18.3); a
    Content-Length larger than what arrived (or not a number) leaves the body as it came, for
    the script's sanity check to judge, as Kamailio does.
    Raises only RemoteProtocolError, whose ``status_hint`` says what to answer; when the
    start line of a request was readable, the error has a ``partial`` attribute with what
    was parsed, so a reply can still be built.
    """
    # Over the limit: still read the headers (bounded by the datagram/stream limits) so the
    # request can be answered 513, as RFC 3261 §21.5.14 asks.
    too_large = len(data) > max_size
    if len(data) > max(max_size, MAX_MESSAGE_SIZE):
        raise RemoteProtocolError("Message too large", 513)
    # RFC 3261 §7.5: ignore empty lines before the start line (bytes compared as numbers:
    # compiled, data.startswith with an offset is a generic method call)
    offset = 0
    n = len(data)
    while offset + 1 < n and data[offset] == 13 and data[offset + 1] == 10:
        offset += 2
    if not too_large:
        usual = _parse_usual(data, offset, datagram, max_size)
        if usual is not None:
            return usual
    lines: list[str] | None = None
    end = data.find(b"\r\n\r\n", offset)
    if end > offset:
        sep = 4
        head = data[offset:end].decode("utf-8", "surrogateescape")
        lines = head.split("\r\n")
        if head.count("\n") == len(lines) - 1:
            # CRLF only (the usual case): no LF LF ends the head earlier (find_head_end's
            # second search), and a line that starts with SP or HT is a continuation
            folded = _continued(lines)
        else:
            lines = None
    if lines is None:
        end, sep = find_head_end(data, offset)
        if end < 0:
            if not datagram:
                raise RemoteProtocolError("Incomplete message header")
            # A datagram is the whole message: a missing blank line just means no body.
            end = len(data.rstrip(b"\r\n"))
            sep = len(data) - end
        if end <= offset:
            raise RemoteProtocolError("Empty message")
        head = data[offset:end].decode("utf-8", "surrogateescape")
        lines = _split_lines(head)
        folded = "\n " in head or "\n\t" in head
    msg, bad_start = _parse_start_line(lines[0])
    # its fields set through the base class: compiled, an attribute of a Request | Response
    # is set by a generic setattr (~230 instructions each), of a Message natively
    parsed: Message = msg
    try:
        headers, clens = parse_header_lines(lines, folded)
        parsed.headers = headers
        if bad_start:
            raise RemoteProtocolError(bad_start)
        if too_large:
            raise RemoteProtocolError("Message too large", 513)
        exact = _set_body(parsed, data, end + sep, clens, datagram, max_size)
    except RemoteProtocolError as err:
        if isinstance(msg, Request):
            err.partial = msg
        raise
    if exact and offset == 0 and type(data) is bytes:
        parsed.raw = data
    return msg


def _parse_usual(
    data: bytes, offset: int, datagram: bool, max_size: int
) -> Request | Response | None:
    """The usual message (CRLF line ends, no folded line, a well-formed start line and
    header lines, a Content-Length that fits) parsed as parse_message_untrusted's full path
    parses it; None for anything else, which the full path then parses (or refuses) itself.

    What it leaves out: the search for the blank line when the message ends with it (a
    message without a body), and the pass over the lines for continuations (``_continued``).
    Parsed with ``folded`` False and strict, a line that starts with SP or HT raises (its
    name would start with whitespace, no token, or it has no colon), as does an empty line:
    the full path then reads the head again, joining continuation lines or ending the head
    at the earlier blank line."""
    n = len(data)
    if (
        n - 4 > offset
        and data[n - 1] == 10
        and data[n - 2] == 13
        and data[n - 3] == 10
        and data[n - 4] == 13
    ):
        # ends with CRLF CRLF: the head's end unless an earlier blank line splits the head
        # below into an empty line (an earlier CRLF CRLF within data[offset:n-4], or one
        # overlapping the last: data ends CRLF CRLF CRLF, the head then ends with CRLF)
        end = n - 4
    else:
        end = data.find(b"\r\n\r\n", offset)
        if end <= offset:
            return None
    head = data[offset:end].decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    if head.count("\n") != len(lines) - 1:
        return None  # bare LF line ends
    try:
        msg, bad_start = _parse_start_line(lines[0])
        if bad_start:
            return None
        headers, clens = parse_header_lines(lines, False)
        parsed: Message = msg
        parsed.headers = headers
        exact = _set_body(parsed, data, end + 4, clens, datagram, max_size)
    except RemoteProtocolError:
        return None
    if exact and offset == 0 and type(data) is bytes:
        parsed.raw = data
    return msg


def _set_body(
    parsed: Message,
    data: bytes,
    body_start: int,
    clens: list[str],
    datagram: bool,
    max_size: int,
) -> bool:
    """Set the body by the Content-Length values (``clens``); True if the message ends
    where the body does (its bytes can serve as ``raw``)."""
    if clens:
        text = clens[0]
        if any(c != text for c in clens):
            raise RemoteProtocolError("Conflicting Content-Length headers")
        clen = uint(text, max_size)
        if datagram and (clen is None or body_start + clen > len(data)):
            # A datagram is the whole message: as Kamailio, keep what arrived and let
            # the script judge (sanity_check's Content-Length check answers it).
            parsed.body = data[body_start:]
            return True
        if clen is None:
            raise RemoteProtocolError("Bad Content-Length")
        if body_start + clen > len(data):
            raise RemoteProtocolError("Content-Length larger than the body")
        parsed.body = data[body_start : body_start + clen]
        return body_start + clen == len(data)
    if not datagram:
        raise RemoteProtocolError("Content-Length required on stream transports")
    parsed.body = data[body_start:]
    return True


def _continued(lines: list[str]) -> bool:
    """True if a header line (not the start line) of a CRLF-split head starts with SP or HT:
    the head holds folded lines (RFC 3261 §7.3.1), the same answer as searching it for
    CRLF SP and CRLF HT."""
    for i in range(1, len(lines)):
        line = lines[i]
        if line:
            c = line[0]
            if c == " " or c == "\t":
                return True
    return False


def _split_lines(head: str) -> list[str]:
    crlf = head.count("\r\n")
    if crlf == head.count("\n"):
        return head.split("\r\n")  # the usual case: CRLF only
    # bare LF line ends (alone or mixed with CRLF): a stray CR before LF is dropped
    return [line[:-1] if line.endswith("\r") else line for line in head.split("\n")]


def _parse_start_line(first: str) -> tuple[Request | Response, str]:
    """The message the start line announces, and an error text if the line is malformed
    but still clearly a request (so the caller can answer it with 400)."""
    if first.startswith("SIP/"):
        # never a request: its first word holds a "/", which no method (a token) has
        version, _, rest = first.partition(" ")
        code, _, reason = rest.partition(" ")
        if (version == "SIP/2.0" or SIP_VERSION_RE.fullmatch(version)) and len(code) == 3:
            status = uint(code, 699)
            if status is None or status < 100:
                raise RemoteProtocolError("Bad status code")
            return Response(status, reason, version=version), ""
        raise RemoteProtocolError("Malformed status line")
    parts = first.split(" ")
    if len(parts) == 3:
        method, uri, version = parts
        if is_token(method) and uri and version.startswith("SIP/"):
            if (version == "SIP/2.0" or SIP_VERSION_RE.fullmatch(version)) and _uri_ok(uri):
                return Request(method, uri, version=version), ""
    # Extra or missing SP, whitespace inside the R-URI, trailing blanks (RFC 4475 §3.1.2.7-10):
    # still a request we can answer 400 to if its headers are readable.
    words = first.split()
    if len(words) >= 3 and is_token(words[0]) and SIP_VERSION_RE.fullmatch(words[-1]):
        return Request(words[0], words[1], version=words[-1]), "Malformed Request-Line"
    raise RemoteProtocolError("Malformed start line")


def _uri_ok(uri: str) -> bool:
    # the R-URI may not contain whitespace or control characters (HT is not printable).
    # Compiled, ord(uri[i]) reads the string's bytes (no character objects): an ASCII URI of
    # printable characters is answered without isprintable's lookups in the Unicode tables;
    # anything else (a control or a non-ASCII character) gets isprintable's own answer
    for i in range(len(uri)):
        c = ord(uri[i])
        if c < 32 or c > 126:
            return uri.isprintable()
    return True


# KNOWN_KEYS' names as "Name: " prefixes by entry (in the table's order: the most frequent
# headers first); _KNOWN_FIRST[c] is 1 + the first entry whose name starts with the ASCII
# character c (0: none), _KNOWN_NEXT[e] 1 + the next entry with the same first character.
# Compiled, the first character and the chain are bytes read as numbers: no character object,
# dict entry or tuple per header type (the dict of tuples before), the prefix string only.
# With its SP the prefix leaves a value that strip returns as it is (no second string); a
# line written otherwise ("Name:value", "Name :") is read by the general path, to the same
# name, key and value.
_KNOWN_NAMES: Final[tuple[str, ...]] = tuple(KNOWN_KEYS)
_KNOWN_KEY_OF: Final[tuple[str, ...]] = tuple(KNOWN_KEYS.values())
_KNOWN_PREFIXES: Final[tuple[str, ...]] = tuple(name + ": " for name in _KNOWN_NAMES)


def _known_tables() -> tuple[bytes, bytes]:
    first = bytearray(128)
    nxt = bytearray(len(_KNOWN_NAMES))
    last: dict[int, int] = {}
    for e, name in enumerate(_KNOWN_NAMES):
        c = ord(name[0])
        if c >= 128 or e >= 254:
            raise ValueError(f"KNOWN_KEYS does not fit the prefix tables at {name!r}")
        if c in last:
            nxt[last[c]] = e + 1
        else:
            first[c] = e + 1
        last[c] = e
    return bytes(first), bytes(nxt)


_KNOWN_TABLES: Final = _known_tables()
_KNOWN_FIRST: Final = _KNOWN_TABLES[0]
_KNOWN_NEXT: Final = _KNOWN_TABLES[1]


def _known_entry(raw: str) -> int:
    """The KNOWN_KEYS entry whose "Name: " starts ``raw`` (empty or not), or -1."""
    if not raw:
        return -1
    c = ord(raw[0])
    if c >= 128:
        return -1
    j = _KNOWN_FIRST[c]
    while j:
        e = j - 1
        if raw.startswith(_KNOWN_PREFIXES[e]):
            return e
        j = _KNOWN_NEXT[e]
    return -1


def parse_header_lines(
    lines: list[str],
    folded: bool,
    *,
    start: int = 1,
    strict: bool = True,
    keep_raw: bool = True,
) -> tuple[list[Header], list[str]]:
    """The one header-line parser: Header objects for ``lines[start:]`` (continuation lines,
    RFC 3261 §7.3.1, joined to their header when ``folded``) and the Content-Length values.

    ``strict`` (bytes from the network): a line without a colon or a name that is not a token
    raises RemoteProtocolError; not strict (text a script or a module wrote, see
    ``parse_header_text``): such lines are left out. ``keep_raw``: every Header keeps its
    line(s) as ``raw`` and is written back as it came; else it is written as ``Name: value``."""
    headers: list[Header] = []
    clens: list[str] = []
    n = len(lines)
    i = start
    while i < n:
        raw = lines[i]
        i += 1
        if folded and i < n and lines[i][:1] in (" ", "\t"):
            # LWS = [*WSP CRLF] 1*WSP: continuation lines belong to this header
            j = i
            while j < n and lines[j][:1] in (" ", "\t"):
                j += 1
            raw = "\r\n".join(lines[i - 1 : j])
            i = j
        # A usual name (KNOWN_KEYS) is recognised by "Name: " at the start of the line: the
        # table's name and key objects serve, no name string is cut out and hashed
        key: str | None = None
        e = _known_entry(raw)
        if e >= 0:
            name = _KNOWN_NAMES[e]
            key = _KNOWN_KEY_OF[e]
            value = raw[len(_KNOWN_PREFIXES[e]) :]
        else:
            # find and two slices, not partition: no tuple and no separator string
            colon = raw.find(":")
            if colon < 0:
                if not strict:
                    continue
                if raw[:1] in (" ", "\t"):
                    raise RemoteProtocolError("Continuation line without a header")
                raise RemoteProtocolError(f"Malformed header line {raw[:40]!r}")
            name = raw[:colon]
            value = raw[colon + 1 :]
            # not a name of the table (it would have matched above)
            if strict:
                name = name.rstrip(" \t")
                if not is_token(name):
                    raise RemoteProtocolError(f"Malformed header name {name[:40]!r}")
            else:
                name = name.strip()
                if not name:
                    continue
            low = name.lower()
            key = COMPACT_FORMS.get(low, low)
        if folded and "\n" in value:
            value = " ".join(part.strip(" \t") for part in value.split("\r\n"))
        else:
            value = value.strip(" \t")
        headers.append(Header(name, value, raw, key))
        if key == "content-length":
            clens.append(value)
    if not keep_raw:
        for h in headers:
            h.raw = None
    return headers, clens


def parse_header_text(text: str, *, keep_raw: bool = False) -> list[Header]:
    """Header lines as a script or a module writes them (``"Name: value\\r\\n"``, one or
    several, CRLF or LF ends): lines that are no header are left out. ``keep_raw``: each
    Header keeps the line(s) it came from (to match them against a message's lines)."""
    folded = "\n " in text or "\n\t" in text
    lines = _split_lines(text)
    return parse_header_lines(lines, folded, start=0, strict=False, keep_raw=keep_raw)[0]


def serialize(msg: Message) -> bytes:
    return msg.to_bytes()


def ensure_content_length(msg: Message) -> None:
    """Make Content-Length match the body (needed on streams and after body changes)."""
    cl = msg.get("content-length")
    if cl is None or cl.strip() != str(len(msg.body)):
        msg.set_header("Content-Length", str(len(msg.body)))


__all__ = [
    "Header",
    "LocalProtocolError",
    "Message",
    "Request",
    "Response",
    "ensure_content_length",
    "find_head_end",
    "parse_header_lines",
    "parse_header_text",
    "parse_message_untrusted",
]
