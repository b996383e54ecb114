"""Parsing tables: bytes -> message -> bytes, header forms, URIs, Via, name-addr, CSeq."""

from __future__ import annotations

import random

import pytest

from ksr.sip.abnf import is_token
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import (
    _usual_name_addr,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_commas,
)
from ksr.sip.message import Header, Request, Response, parse_message_untrusted
from ksr.sip.uri import parse_uri


def msg(*lines: str, body: str = "") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


BASE = (
    "INVITE sip:bob@example.com SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
    "From: <sip:a@example.com>;tag=1",
    "To: <sip:bob@example.com>",
    "Call-ID: c1",
    "CSeq: 1 INVITE",
)

# Messages that must come back byte-exact after parse + to_bytes (nothing changed).
ROUND_TRIP = [
    msg(*BASE, "Content-Length: 0"),
    msg(*BASE, "Content-Length: 4", body="abcd"),
    msg(*BASE, "Subject: folded", " continued", "\tand tabbed", "Content-Length: 0"),
    msg(*BASE, "X-Spaces   :   value  ", "Content-Length: 0"),
    msg("SIP/2.0 200 OK", *BASE[1:], "Content-Length: 0"),
    msg("SIP/2.0 100 ", *BASE[1:], "Content-Length: 0"),
    msg(*BASE, "Content-Length: 3", body="\x00\x01\r"),
]


@pytest.mark.parametrize("data", ROUND_TRIP)
def test_round_trip_byte_exact(data: bytes) -> None:
    m = parse_message_untrusted(data)
    assert m.to_bytes() == data
    # a copy re-serializes from the raw header lines, still identical
    assert m.copy().to_bytes() == data


def test_binary_body_round_trip() -> None:
    body = bytes(range(256))
    data = b"\r\n".join(x.encode() for x in BASE) + b"\r\nContent-Length: 256\r\n\r\n" + body
    m = parse_message_untrusted(data)
    assert m.body == body
    assert m.to_bytes() == data
    m.set_header("X-New", "1")
    out = parse_message_untrusted(m.to_bytes())
    assert out.body == body
    assert out.get("x-new") == "1"


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("v", "via"),
        ("f", "from"),
        ("t", "to"),
        ("i", "call-id"),
        ("m", "contact"),
        ("c", "content-type"),
        ("k", "supported"),
        ("s", "subject"),
        ("e", "content-encoding"),
        ("o", "event"),
        ("u", "allow-events"),
        ("r", "refer-to"),
    ],
)
def test_compact_forms(compact: str, full: str) -> None:
    data = msg(*BASE, f"{compact.upper()}: x1", f"{compact}: x2", "Content-Length: 0")
    m = parse_message_untrusted(data)
    assert m.get_all(full)[-2:] == ["x1", "x2"]
    assert m.get(compact) == m.get(full)


def test_compact_content_length() -> None:
    m = parse_message_untrusted(msg(*BASE, "l: 2", body="abc"))
    assert m.body == b"ab"
    assert m.get("content-length") == "2"


def test_header_forms() -> None:
    data = msg(
        *BASE,
        "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
        "Route: <sip:p3.example.com;lr>",
        'Contact: "A, B" <sip:a@h>;q=0.5, <sip:b@h>',
        "Subject  :  a",
        "  b",
        "X-Empty:",
        "Content-Length: 0",
    )
    m = parse_message_untrusted(data)
    assert m.get_values("route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
        "<sip:p3.example.com;lr>",
    ]
    assert m.get_values("contact") == ['"A, B" <sip:a@h>;q=0.5', "<sip:b@h>"]
    assert m.get("subject") == "a b"
    assert m.get("x-empty") == ""
    assert m.count("route") == 2
    assert m.has("ROUTE")


@pytest.mark.parametrize(
    ("text", "token"),
    [("INVITE", True), ("REGISTER", True), ("invite", True), ("X-Ext.1!%*_+`'~", True)]
    + [("", False), ("IN VITE", False), ("SIP/2.0", False), ("A:B", False), ("\u00e9", False)],
)
def test_is_token(text: str, token: bool) -> None:
    assert is_token(text) is token


def test_first_header_of_a_key() -> None:
    m = parse_message_untrusted(
        msg(*BASE, "Max-Forwards: 70", "max-forwards: 69", "v: SIP/2.0/TCP h2", "l: 0")
    )
    h = m.first("max-forwards")
    assert h is not None
    assert (h.name, h.value) == ("Max-Forwards", "70")
    assert h is next(x for x in m.headers if x.key == "max-forwards")  # the object itself
    assert m.first("via") is m.headers[0]  # compact and full forms share one key
    cl = m.first("content-length")
    assert cl is not None
    assert (cl.name, cl.value) == ("l", "0")
    assert m.first("route") is None
    assert m.first("Max-Forwards") is None  # a key, not a name as written
    m.headers.insert(0, Header("Max-Forwards", "5"))
    h = m.first("max-forwards")
    assert h is not None
    assert h.value == "5"


def test_header_names_known_and_not() -> None:
    m = parse_message_untrusted(
        msg(*BASE, "Via-X: 1", "Tox: 2", "VIA : SIP/2.0/UDP h2", "T: <sip:t@h>", "C: a/b", "l: 0")
    )
    got = [(h.name, h.key, h.value) for h in m.headers[5:]]
    assert got == [
        ("Via-X", "via-x", "1"),
        ("Tox", "tox", "2"),
        ("VIA", "via", "SIP/2.0/UDP h2"),
        ("T", "to", "<sip:t@h>"),
        ("C", "content-type", "a/b"),
        ("l", "content-length", "0"),
    ]
    assert [v.host for v in m.vias] == ["192.0.2.1", "h2"]


def test_folding_and_line_ends_found_in_every_head() -> None:
    # a tab-started continuation, then a head of CRLF lines with one bare LF (two line ends)
    m = parse_message_untrusted(msg(*BASE, "Subject: a", "\tb", "Content-Length: 0"))
    assert m.get("subject") == "a b"
    assert m.raw is not None
    mixed = msg(*BASE, "Content-Length: 0").replace(b"Call-ID: c1\r\n", b"Call-ID: c1\n")
    m = parse_message_untrusted(mixed)
    assert m.call_id == "c1"
    assert m.get("cseq") == "1 INVITE"
    # LF LF before the CRLF CRLF ends the head there: the rest is the body
    early = msg(*BASE, "Content-Length: 0").replace(b"Call-ID: c1\r\n", b"Call-ID: c1\n\n")
    m = parse_message_untrusted(early)
    assert m.get("cseq") is None
    assert m.body.startswith(b"CSeq: 1 INVITE")


def test_head_end_of_a_message_ending_with_its_blank_line() -> None:
    # no body: the blank line at the end is the head's end (no search) ...
    data = msg(*BASE, "Content-Length: 0")
    m = parse_message_untrusted(data)
    assert (m.get("content-length"), m.body, m.raw) == ("0", b"", data)
    # ... unless an earlier one ends it: the rest, ending with CRLF CRLF too, is the body
    early = msg(*BASE[:3], "", "Call-ID: c1", "CSeq: 1 INVITE")
    m = parse_message_untrusted(early)
    assert (m.get("call-id"), m.body) == (None, b"Call-ID: c1\r\nCSeq: 1 INVITE\r\n\r\n")
    # CRLF CRLF CRLF at the end: the head ends at the first of them, the body is one CRLF
    m = parse_message_untrusted(msg(*BASE) + b"\r\n")
    assert (m.get("cseq"), m.body) == ("1 INVITE", b"\r\n")
    # a body that itself ends with CRLF CRLF: the head still ends at the first blank line
    m = parse_message_untrusted(msg(*BASE, "Content-Length: 6", body="ab\r\n\r\n"))
    assert (m.get("cseq"), m.body) == ("1 INVITE", b"ab\r\n\r\n")
    # folded lines join the header before them, even one that reads as a header
    m = parse_message_untrusted(msg(*BASE, "Subject: a", " b", "Content-Length: 0"))
    assert m.get("subject") == "a b"
    m = parse_message_untrusted(msg(*BASE, " x: y", "Content-Length: 0"))
    assert m.get("cseq") == "1 INVITE x: y"


def test_lf_only_and_leading_crlf() -> None:
    data = b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nCall-ID: 1\nContent-Length: 2\n\nhi"
    m = parse_message_untrusted(data)
    assert isinstance(m, Request)
    assert m.call_id == "1"
    assert m.body == b"hi"
    assert m.top_via.host == "h"


def test_datagram_content_length_framing() -> None:
    # extra octets after Content-Length are ignored on UDP (RFC 3261 §18.3)
    m = parse_message_untrusted(msg(*BASE, "Content-Length: 2", body="hello"))
    assert m.body == b"he"
    # no Content-Length on UDP: the body runs to the end of the datagram
    m = parse_message_untrusted(msg(*BASE, body="hello"))
    assert m.body == b"hello"
    with pytest.raises(RemoteProtocolError):
        parse_message_untrusted(msg(*BASE, body="hello"), datagram=False)
    # a Content-Length the datagram cannot hold (or no number): the body is what arrived, for
    # the script's sanity check to judge (Kamailio); a stream cannot be framed with it
    for clen in ("10", "-1", "²", "9" * 5000):
        m = parse_message_untrusted(msg(*BASE, f"Content-Length: {clen}", body="abc"))
        assert (m.body, m.get("content-length")) == (b"abc", clen)
        with pytest.raises(RemoteProtocolError):
            parse_message_untrusted(
                msg(*BASE, f"Content-Length: {clen}", body="abc"), datagram=False
            )


@pytest.mark.parametrize(
    ("data", "partial"),
    [
        (msg(*BASE, "Content-Length: 1", "Content-Length: 2", body="ab"), True),
        (msg(*BASE, "Bad Header Name: x"), True),
        (msg(*BASE, "NoColonHere"), True),
        (msg("INVITE  sip:a@b SIP/2.0", *BASE[1:]), True),
        (msg("INVITE sip:a@b SIP/2.0 ", *BASE[1:]), True),
        (msg("INVITE sip:a@b", *BASE[1:]), False),
        (msg("SIP/2.0 1000 Big", *BASE[1:]), False),
        (msg("SIP/2.0 099 Small", *BASE[1:]), False),
        (msg("SIP/2.0 2OO OK", *BASE[1:]), False),
        (b"", False),
        (b"\r\n\r\n", False),
        (b"x" * 70000, False),
    ],
)
def test_malformed(data: bytes, partial: bool) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message_untrusted(data)
    assert isinstance(getattr(info.value, "partial", None), Request) == partial
    assert 400 <= info.value.status_hint < 600


def test_response_fields() -> None:
    m = parse_message_untrusted(msg("SIP/2.0 180 Ringing Now", *BASE[1:], "Content-Length: 0"))
    assert isinstance(m, Response)
    assert (m.status, m.reason, m.method) == (180, "Ringing Now", "INVITE")


@pytest.mark.parametrize(
    ("text", "scheme", "user", "host", "port", "params", "headers"),
    [
        ("sip:alice@example.com", "sip", "alice", "example.com", None, {}, None),
        (
            "sips:alice:pw@Example.COM:5061;transport=tcp;lr",
            "sips",
            "alice",
            "example.com",
            5061,
            {"transport": "tcp", "lr": None},
            None,
        ),
        (
            "sip:[2001:db8::1]:5070;maddr=10.0.0.1",
            "sip",
            None,
            "2001:db8::1",
            5070,
            {"maddr": "10.0.0.1"},
            None,
        ),
        (
            "sip:bob@h?subject=hi&priority=urgent",
            "sip",
            "bob",
            "h",
            None,
            {},
            "subject=hi&priority=urgent",
        ),
        (
            "sip:user;par=u%40e.net@example.com",
            "sip",
            "user;par=u%40e.net",
            "example.com",
            None,
            {},
            None,
        ),
        ("sip:a?b@h;x=1", "sip", "a?b", "h", None, {"x": "1"}, None),
        (
            "tel:+1-201-555-0123;phone-context=x",
            "tel",
            "+1-201-555-0123",
            "",
            None,
            {"phone-context": "x"},
            None,
        ),
    ],
)
def test_uris(
    text: str,
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    params: dict[str, str | None],
    headers: str | None,
) -> None:
    u = parse_uri(text)
    assert (u.scheme, u.user, u.host, u.port, u.params, u.headers) == (
        scheme,
        user,
        host,
        port,
        params,
        headers,
    )
    if scheme != "tel":
        assert parse_uri(str(u)) == u


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nocolon",
        "sip:",
        "sip:a@",
        "sip:h:99999",
        "sip:h:٣",
        "sip:a b@h",
        "1sip:h",
        "sip:[::1",
        "sip:@h",
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_uri(text)


@pytest.mark.parametrize(
    ("text", "display", "uri", "params", "bracketed"),
    [
        ('"Alice A." <sip:a@h>;tag=1', '"Alice A."', "sip:a@h", {"tag": "1"}, True),
        ("Alice <sip:a@h;lr>;tag=1", "Alice", "sip:a@h;lr", {"tag": "1"}, True),
        ("<sip:a@h>", None, "sip:a@h", {}, True),
        ("sip:a@h;tag=1", None, "sip:a@h", {"tag": "1"}, False),
        ('"q\\"uote"<sip:a@h>', '"q\\"uote"', "sip:a@h", {}, True),
        ("sip:a@h ; tag = 2", None, "sip:a@h", {"tag": "2"}, False),
    ],
)
def test_name_addr(
    text: str, display: str | None, uri: str, params: dict[str, str | None], bracketed: bool
) -> None:
    na = parse_name_addr(text)
    assert (na.display, na.uri_text, na.params, na.bracketed) == (display, uri, params, bracketed)


@pytest.mark.parametrize(
    ("usual", "spelled"),
    [
        ('"sipp" <sip:c@h:5060>;tag=1-2', '"sipp"<sip:c@h:5060> ;tag=1-2'),
        ('"a" <sip:a@h>;tag=x', '"a"  <sip:a@h>;tag=x'),
        ("sut <sip:s@h>", " sut  <sip:s@h>\x0c"),
        ("<sip:a@h>;tag=x", "<sip:a@h>;TAG=x"),
        ("<sip:a@h>;tag= x ", "<sip:a@h>; tag=x"),
        ("<sip:a@h>;tag=", "<sip:a@h>;tag = "),
        ("A B <sip:a@h;lr>;tag=a=b", "A B <sip:a@h;lr>;x;tag=a=b"),
        ('x"y <sip:a@h>;tag=1', 'x"y <sip:a@h>;tag=0;tag=1'),
    ],
)
def test_name_addr_usual_form_parses_as_any_spelling(usual: str, spelled: str) -> None:
    """From/To as user agents write them take a short path (_usual_name_addr), any other
    spelling the full parse: both must read the same name-addr."""
    assert _usual_name_addr(usual) is not None
    assert _usual_name_addr(spelled) is None
    a, b = parse_name_addr(usual), parse_name_addr(spelled)
    assert (a.display, a.uri_text, a.params, a.bracketed) == (
        b.display,
        b.uri_text,
        {k: v for k, v in b.params.items() if k == "tag"},
        b.bracketed,
    )


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@h>',
        "Bell, Alexander <sip:a@h>",
        "< sip:a@h >",
        "sip:a@h?x=y",
        '"a" <sip:a@h>;;',
        "<sip:a@h>;tag=",
    ],
)
def test_name_addr_strict_rejects(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_name_addr(text, strict=True)


@pytest.mark.parametrize(
    ("text", "transport", "host", "port", "params"),
    [
        (
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
            "UDP",
            "192.0.2.1",
            5060,
            {"branch": "z9hG4bK1", "rport": None},
        ),
        (
            "SIP / 2.0 / tcp h.example.com ; branch = z9hG4bK2",
            "TCP",
            "h.example.com",
            None,
            {"branch": "z9hG4bK2"},
        ),
        (
            "SIP/2.0/TLS [2001:db8::9]:5061;received=2001:db8::1;rport=5061",
            "TLS",
            "2001:db8::9",
            5061,
            {"received": "2001:db8::1", "rport": "5061"},
        ),
    ],
)
def test_via(
    text: str, transport: str, host: str, port: int | None, params: dict[str, str | None]
) -> None:
    v = parse_via(text)
    assert (v.transport, v.host, v.port, v.params) == (transport, host, port, params)
    assert parse_via(str(v)) == v


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0",
        "HTTP/1.1/TCP h",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP h:x",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP h:" + "1" * 6000,
    ],
)
def test_bad_via(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_via(text)


@pytest.mark.parametrize(
    ("usual", "spaced"),
    [
        ("SIP/2.0/UDP h", "SIP / 2.0 / udp  h"),
        (
            "SIP/2.0/WSS h:443 ;rport; branch=z9hG4bK3 ",
            "SIP/2.0/\twss\t h:443;rport;branch=z9hG4bK3",
        ),
        ("SIP/2.0/SCTP [::1]:5;received=::2", "  SIP/2.0/SCTP [::1]:5;received=::2"),
        ("SIP/2.0/UDP h:5;branch=z9hG4bK4 ", "SIP/2.0/UDP h:5; BRANCH = z9hG4bK4"),
        ("SIP/2.0/UDP h;branch=\ta=b", "SIP/2.0/UDP h;branch=a=b;"),
    ],
)
def test_via_usual_form_parses_as_any_spacing(usual: str, spaced: str) -> None:
    a, b = parse_via(usual), parse_via(spaced)
    assert a == b
    assert a.protocol == "SIP/2.0"
    assert parse_via("SIP/2.0/XYZ h").transport == "XYZ"  # other transports: the long way


@pytest.mark.parametrize(
    "text", ["SIP/2.0/UDP ", "SIP/2.0/UDP h:x", "SIP/2.0/UDP h;;x", "SIP/2.0/UDP h;branch= "]
)
def test_bad_via_usual_form(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_via(text, strict=True)
    if text.endswith("= "):
        assert parse_via(text).params == {"branch": ""}  # not strict: an empty value is kept


def test_vias_across_headers() -> None:
    m = parse_message_untrusted(
        msg(
            BASE[0],
            "Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2",
            "v: SIP/2.0/UDP c",
            *BASE[2:],
            "Content-Length: 0",
        )
    )
    assert [v.host for v in m.vias] == ["a", "b", "c"]
    assert m.top_via.branch == "z9hG4bK1"


@pytest.mark.parametrize(
    ("text", "number", "method"),
    [
        ("1 INVITE", 1, "INVITE"),
        ("0009 INVITE", 9, "INVITE"),
        ("4294967295 ACK", 2**32 - 1, "ACK"),
        (" 5\t BYE ", 5, "BYE"),
    ],
)
def test_cseq(text: str, number: int, method: str) -> None:
    c = parse_cseq(text)
    assert (c.number, c.method) == (number, method)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "INVITE",
        "4294967296 INVITE",
        "-1 INVITE",
        "1 IN VITE",
        "١ INVITE",
        "9" * 5000 + " INVITE",
    ],
)
def test_bad_cseq(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_cseq(text)


def test_split_commas() -> None:
    assert split_commas('"a,b" <sip:x@h;p=1,2>, c') == ['"a,b" <sip:x@h;p=1,2>', "c"]
    assert split_commas("a") == ["a"]
    assert split_commas('"esc\\",aped", b') == ['"esc\\",aped"', "b"]
    assert split_commas("SIP/2.0/UDP a;branch=1 , SIP/2.0/UDP b") == [
        "SIP/2.0/UDP a;branch=1",
        "SIP/2.0/UDP b",
    ]
    assert split_commas("<sip:a;lr>, <sip:b,c;lr>,<d>") == ["<sip:a;lr>", "<sip:b,c;lr>", "<d>"]


def _split_commas_by_character(value: str) -> list[str]:
    """The definition: a walk over every character (quotes, escapes, <> depth)."""
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return out


def test_split_commas_agrees_with_the_character_walk() -> None:
    rng = random.Random(4475)
    alphabet = 'ab ,,<>"\\;='
    for _ in range(20000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        assert split_commas(value) == _split_commas_by_character(value), value


def test_header_changes_serialize() -> None:
    m = parse_message_untrusted(msg(*BASE, "Max-Forwards: 70", "Content-Length: 0"))
    m.set_header("Max-Forwards", "69")
    m.insert_header("Record-Route", "<sip:p;lr>")
    assert m.remove_headers("call-id") == 1
    out = parse_message_untrusted(m.to_bytes())
    assert out.get("max-forwards") == "69"
    assert out.headers[0].name == "Record-Route"
    assert not out.has("call-id")
    m.set_body(b"xyz", "text/plain")
    out = parse_message_untrusted(m.to_bytes())
    assert (out.body, out.get("content-length"), out.get("content-type")) == (
        b"xyz",
        "3",
        "text/plain",
    )


def test_uri_check_agrees_with_isprintable() -> None:
    # the byte-level walk answers an ASCII URI itself, anything else as isprintable does
    from ksr.sip.message import _uri_ok

    for code in [*range(0x300), 0x2028, 0x3000, 0xDC80, 0xFEFF]:
        uri = f"sip:a{chr(code)}b@example.com"
        assert _uri_ok(uri) is uri.isprintable(), hex(code)
    assert _uri_ok("sip:bob@example.com;transport=udp")
    assert not _uri_ok("sip:bob@example.com\x7f")
    assert not _uri_ok("\tsip:bob@example.com")


def test_known_name_table_agrees_with_known_keys() -> None:
    # every "Name: " of KNOWN_KEYS is found (its own entry), nothing else is
    from ksr.sip.headers import KNOWN_KEYS
    from ksr.sip.message import _KNOWN_KEY_OF, _KNOWN_NAMES, _known_entry

    for name, key in KNOWN_KEYS.items():
        e = _known_entry(f"{name}: value")
        assert (_KNOWN_NAMES[e], _KNOWN_KEY_OF[e]) == (name, key)
        assert _known_entry(f"{name}: ") == e
        assert _known_entry(f"{name}:value") == -1
        assert _known_entry(f"{name} : value") == -1
        assert _known_entry(f"{name}") == -1
        assert _known_entry(f"{name}X: value") == -1
        low = _known_entry(f"{name.lower()}: value")
        assert (low >= 0) == (name.lower() in KNOWN_KEYS)
        assert low < 0 or _KNOWN_NAMES[low] == name.lower()
    for other in ("", ":", " Via: x", "Vía: x", "Viaa: x", "X-Via: x", "\u0100: x", "V"):
        assert _known_entry(other) == -1
    # a message's headers read through the table: the table's objects, the same values
    parsed = parse_message_untrusted(msg(*BASE))
    via = parsed.headers[0]
    value = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"
    assert (via.name, via.key, via.value) == ("Via", "via", value)
    assert via.name is _KNOWN_NAMES[0]
    assert via.key is _KNOWN_KEY_OF[0]
