"""The proxy's building blocks in ksr/sip, each used by the core's stateless paths and by tm:
the Via we add, the Via we take off a reply, where a reply to a Via goes, the reply a proxy
makes, and the one parser of header lines (the network's and the script's)."""

from __future__ import annotations

import pytest

from ksr.sip.builders import (
    make_reply,
    make_via,
    reply_upstream,
    via_destination,
    without_first_values,
    without_top_via,
)
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import parse_via
from ksr.sip.message import (
    Header,
    Request,
    Response,
    parse_header_lines,
    parse_header_text,
    parse_message_untrusted,
)
from ksr.sip.received import received_fix

REQ = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:a@example.com>;tag=1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def request() -> Request:
    m = parse_message_untrusted(REQ)
    assert isinstance(m, Request)
    return m


# -- the Via we add ---------------------------------------------------------------------------
def test_make_via() -> None:
    assert (
        make_via("udp", "192.0.2.5", 5060, "z9hG4bKx")
        == "SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKx"
    )
    assert (
        make_via("tls", "::1", "5061", "z9hG4bKy", rport=True, worker=3)
        == "SIP/2.0/TLS [::1]:5061;branch=z9hG4bKy;rport;ksrw=3"
    )
    assert make_via("ws", "[::1]", 80, "z9hG4bKz").startswith("SIP/2.0/WS [::1]:80;")
    assert make_via("udp", "h", 1, "z9hG4bKp", params={"srvid": "7", "x": None}).endswith(
        ";branch=z9hG4bKp;srvid=7;x"
    )
    via = parse_via(make_via("tcp", "example.net", 5062, "z9hG4bKq", rport=True))
    assert (via.transport, via.host, via.port, via.branch) == (
        "TCP",
        "example.net",
        5062,
        "z9hG4bKq",
    )
    assert via.params["rport"] is None


def test_make_via_without_params_as_with_them() -> None:
    # the Via without extra parameters is written in one piece: the same text as the general
    # way (parameters in a dict), which puts extra ones after ;rport and before ;ksrw
    for rport in (False, True):
        for worker in (None, 0, 2):
            plain = make_via("udp", "::1", 5060, "z9hG4bKa", rport=rport, worker=worker)
            extra = make_via(
                "udp", "::1", 5060, "z9hG4bKa", rport=rport, worker=worker, params={"srvid": "7"}
            )
            if worker is None:
                assert extra == plain + ";srvid=7"
            else:
                assert extra == plain.replace(";ksrw=", ";srvid=7;ksrw=")
                assert plain.endswith(f";ksrw={worker}")
            assert plain.startswith("SIP/2.0/UDP [::1]:5060;branch=z9hG4bKa")
            assert (";rport" in plain) is rport


# -- the Via we take off a reply --------------------------------------------------------------
def test_without_top_via_removes_our_value_only() -> None:
    ours, theirs = "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa", "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb"
    headers = [
        Header("Via", f"{ours}, {theirs}"),
        Header("Via", "SIP/2.0/TCP 10.0.0.3"),
        Header("CSeq", "1 INVITE"),
    ]
    out = without_top_via(headers)
    assert [h.value for h in out] == [theirs, "SIP/2.0/TCP 10.0.0.3", "1 INVITE"]
    assert [h.value for h in headers][0] == f"{ours}, {theirs}"  # the list given is kept
    alone = [Header("CSeq", "1 INVITE"), Header("Via", ours), Header("Via", theirs)]
    assert [h.value for h in without_top_via(alone)] == ["1 INVITE", theirs]
    # a comma inside a quoted parameter is no second value
    quoted = [Header("Via", 'SIP/2.0/UDP h;x="a,b"'), Header("To", "<sip:b@x>")]
    assert [h.key for h in without_top_via(quoted)] == ["to"]
    assert without_top_via([Header("To", "<sip:b@x>")])[0].value == "<sip:b@x>"


_OURS = b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa1.x.0"
_REST = (
    b"Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport=5070\r\n"
    b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
)


@pytest.mark.parametrize(
    ("data", "cut"),
    [
        # the usual reply: our Via alone on the first line; with and without a body
        (b"SIP/2.0 180 Ringing\r\n" + _OURS + b"\r\n" + _REST + b"Content-Length: 0\r\n\r\n", True),
        (
            b"SIP/2.0 200 OK\r\n"
            + _OURS
            + b"\r\n"
            + _REST
            + b"Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n",
            True,
        ),
        (b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKc\r\n" + _REST + b"\r\n", True),
        # folded: the line's text holds its CRLF SP, cut as a whole
        (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n ;branch=z9hG4bKf\r\n"
            + _REST
            + b"\r\n",
            True,
        ),
        (b"SIP/2.0 200  Two  Spaces\r\n" + _OURS + b"\r\n" + _REST + b"\r\n", True),
        # every Via on one line (as sipp's [last_Via:] writes them): that line keeps the
        # values after ours, written as a new header is; with odd spacing and three values
        (b"SIP/2.0 200 OK\r\n" + _OURS + b", SIP/2.0/UDP 192.0.2.9\r\n" + _REST + b"\r\n", True),
        (
            b"SIP/2.0 200 OK\r\n"
            + _OURS
            + b' ,SIP/2.0/UDP a;x="p,q" ,  SIP/2.0/TCP b\r\n'
            + _REST
            + b"\r\n",
            True,
        ),
        # our Via not first, no reason, a non-ASCII reason, bare LF: serialised as before
        (b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n" + _OURS + b"\r\n" + _REST + b"\r\n", False),
        (b"SIP/2.0 200\r\n" + _OURS + b"\r\n" + _REST + b"\r\n", False),
        (b"SIP/2.0 200 \r\n" + _OURS + b"\r\n" + _REST + b"\r\n", True),
        ("SIP/2.0 200 Gr\u00fc\u00df Gott\r\n".encode() + _OURS + b"\r\n" + _REST + b"\r\n", False),
        (
            (b"SIP/2.0 200 OK\r\n" + _OURS + b"\r\n" + _REST + b"\r\n").replace(b"\r\n", b"\n"),
            False,
        ),
        (b"SIP/2.0 200 OK\n" + _OURS + b"\r\n" + _REST + b"\r\n", False),
    ],
)
def test_reply_upstream_cuts_our_via_out_of_the_bytes(data: bytes, cut: bool) -> None:
    """The reply passed upstream is its bytes as received without our Via's line when that
    can be checked in them, the same bytes as serialising its headers without it."""
    rpl = parse_message_untrusted(data)
    assert isinstance(rpl, Response)
    assert rpl.raw == data
    out = reply_upstream(rpl)
    assert [h.value for h in out.headers] == [h.value for h in without_top_via(rpl.headers)]
    assert (out.status, out.reason, out.body) == (rpl.status, rpl.reason, rpl.body)
    assert (out.raw is not None) is cut
    serialised = Response(out.status, out.reason, out.headers, out.body, out.version).to_bytes()
    assert out.to_bytes() == serialised
    assert rpl.raw == data  # the reply as received is left as it was


def test_reply_upstream_keeps_later_line_ends() -> None:
    """Bare LF ends after our Via's line (RFC 3261 §7.5 allows them from senders) stay as they
    came, as Kamailio relays them: the reply's other bytes are never rewritten."""
    head = b"SIP/2.0 200 OK\r\n" + _OURS + b"\r\n"
    rest = _REST.replace(b"\r\n", b"\n") + b"\n"
    out = reply_upstream(parse_message_untrusted(head + rest))
    assert out.to_bytes() == b"SIP/2.0 200 OK\r\n" + rest


def test_without_first_values_across_lines() -> None:
    headers = [
        Header("Route", "<sip:a;lr>, <sip:b;lr>"),
        Header("To", "<sip:x@y>"),
        Header("Route", "<sip:c;lr>"),
        Header("Route", "<sip:d;lr>"),
    ]
    assert [h.value for h in without_first_values(headers, "route", 3)] == [
        "<sip:x@y>",
        "<sip:d;lr>",
    ]
    left = without_first_values(headers, "route", 1)
    assert [h.value for h in left] == ["<sip:b;lr>", "<sip:x@y>", "<sip:c;lr>", "<sip:d;lr>"]
    assert left[2] is headers[2]  # the lines after are the same objects
    assert without_first_values(headers, "route", 0) == headers
    assert [h.key for h in without_first_values(headers, "route", 9)] == ["to"]


# -- where a reply to a Via goes --------------------------------------------------------------
@pytest.mark.parametrize(
    ("via", "proto", "dest"),
    [
        ("SIP/2.0/UDP 192.0.2.1:5070", None, ("udp", "192.0.2.1", 5070)),
        ("SIP/2.0/UDP 192.0.2.1", None, ("udp", "192.0.2.1", 5060)),
        ("SIP/2.0/TCP h.example;received=192.0.2.9", "udp", ("tcp", "192.0.2.9", 5060)),
        ("SIP/2.0/UDP h;received=192.0.2.9;rport=4444", None, ("udp", "192.0.2.9", 4444)),
        ("SIP/2.0/UDP h:5099;rport", None, ("udp", "h", 5099)),  # rport asked, not filled
    ],
)
def test_via_destination(via: str, proto: str | None, dest: tuple[str, str, int]) -> None:
    assert via_destination(parse_via(via), proto) == dest


def test_reply_goes_where_received_and_rport_say() -> None:
    req = request()
    req.via_fix = received_fix(req, "203.0.113.7", 40000, False)
    assert req.via_fix is not None
    assert via_destination(req.via_fix.via) == ("udp", "203.0.113.7", 40000)
    assert req.top_via.params["rport"] is None  # the received request is unchanged


# -- the reply a proxy makes ------------------------------------------------------------------
def test_reply_carries_lumps_contacts_and_the_fixed_via() -> None:
    req = request()
    req.via_fix = received_fix(req, "203.0.113.7", 40000, False)
    rpl = make_reply(
        req,
        302,
        "Moved",
        extra_headers=[Header("X-A", "1"), ("X-B", "2")],
        server_header="ksr",
        contacts=["sip:b@192.0.2.20", "sip:b@192.0.2.21"],
    )
    out = parse_message_untrusted(rpl.to_bytes())
    assert out.get("via") == (
        "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport=40000;received=203.0.113.7"
    )
    assert [h.key for h in out.headers][-6:] == [
        "server",
        "x-a",
        "x-b",
        "contact",
        "contact",
        "content-length",
    ]
    assert out.get_all("contact") == ["<sip:b@192.0.2.20>", "<sip:b@192.0.2.21>"]
    assert out.to.tag


# -- the one header-line parser ---------------------------------------------------------------
def test_script_header_text() -> None:
    hdrs = parse_header_text("X-A: 1\r\nX-B:2\r\nnot a header\r\n: nameless\r\n\r\n")
    assert [(h.name, h.key, h.value, h.raw) for h in hdrs] == [
        ("X-A", "x-a", "1", None),
        ("X-B", "x-b", "2", None),
    ]
    assert [h.line() for h in hdrs] == ["X-A: 1", "X-B: 2"]  # written anew
    assert [(h.name, h.key) for h in parse_header_text("v: SIP/2.0/UDP h\n i : c1\n")] == [
        ("v", "via")
    ]  # LF line ends; a line starting with blanks continues the previous one
    assert parse_header_text("v: SIP/2.0/UDP h\n i : c1\n")[0].value == "SIP/2.0/UDP h i : c1"
    assert parse_header_text("Subject: a\r\n  b\r\n")[0].value == "a b"
    kept = parse_header_text("Subject:  a\r\n", keep_raw=True)[0]
    assert (kept.value, kept.raw) == ("a", "Subject:  a")
    assert parse_header_text("") == []


def test_network_header_lines_are_strict() -> None:
    lines = ["INVITE sip:b@x SIP/2.0", "Via: SIP/2.0/UDP h", "Content-Length: 5", "l: 5"]
    hdrs, clens = parse_header_lines(lines, False)
    assert [h.raw for h in hdrs] == lines[1:]
    assert clens == ["5", "5"]
    for bad in ("no colon here", "Bad Name: x", " leading: fold"):
        with pytest.raises(RemoteProtocolError):
            parse_header_lines(["X", bad], " " in bad[:1])
