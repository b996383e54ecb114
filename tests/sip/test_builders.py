"""Replies built per RFC 3261 §8.2.6 and branch values."""

from __future__ import annotations

from ksr.sip.builders import (
    BRANCH_COOKIE,
    make_reply,
    new_branch,
    reply_bytes,
    reply_message,
    stateless_branch,
    to_tag_of,
)
from ksr.sip.message import Header, Request, parse_message_untrusted
from ksr.sip.received import received_fix

REQ = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;received=192.0.2.9\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK0\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:a@example.com>;tag=1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Contact: <sip:a@192.0.2.1>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def request() -> Request:
    m = parse_message_untrusted(REQ)
    assert isinstance(m, Request)
    return m


def test_reply_copies_headers_and_adds_to_tag() -> None:
    req = request()
    rpl = parse_message_untrusted(make_reply(req, 486).to_bytes())
    assert (rpl.status, rpl.reason) == (486, "Busy Here")
    assert rpl.get_all("via") == req.get_all("via")  # all Vias, same order, received kept
    assert rpl.get("from") == req.get("from")
    assert rpl.call_id == "c1"
    assert rpl.get("cseq") == "7 INVITE"
    assert rpl.to.tag
    assert rpl.to.uri_text == "sip:bob@example.com"
    assert not rpl.has("contact")
    assert not rpl.has("max-forwards")
    assert rpl.get("content-length") == "0"
    # retransmissions get the same tag (stateless replies must be stable)
    assert parse_message_untrusted(make_reply(request(), 486).to_bytes()).to.tag == rpl.to.tag


def test_no_tag_on_100_and_existing_tag_kept() -> None:
    assert parse_message_untrusted(make_reply(request(), 100).to_bytes()).to.tag is None
    data = REQ.replace(b"To: <sip:bob@example.com>", b"To: <sip:bob@example.com>;tag=xyz")
    req = parse_message_untrusted(data)
    assert isinstance(req, Request)
    assert parse_message_untrusted(make_reply(req, 200).to_bytes()).to.tag == "xyz"


def test_to_tag_properties() -> None:
    """Stable for a retransmission, different for another request, prefixed by the secret,
    a token (RFC 3261 §25.1)."""
    tag = to_tag_of("", "c1", "<sip:a@x>;tag=1", "7 INVITE")
    assert tag == to_tag_of("", "c1", "<sip:a@x>;tag=1", "7 INVITE")
    assert tag.isdigit()
    others = {
        to_tag_of("", "c2", "<sip:a@x>;tag=1", "7 INVITE"),
        to_tag_of("", "c1", "<sip:a@x>;tag=2", "7 INVITE"),
        to_tag_of("", "c1", "<sip:a@x>;tag=1", "8 INVITE"),
        to_tag_of("", None, None, None),
    }
    assert tag not in others
    assert len(others) == 4
    assert to_tag_of("ab12", "c1", "<sip:a@x>;tag=1", "7 INVITE") == "ab12" + tag
    assert len({to_tag_of("", str(i), "f", "1 X") for i in range(300)}) == 300


def test_reply_extras() -> None:
    rpl = make_reply(
        request(),
        420,
        extra_headers=[("Unsupported", "foo")],
        body=b"hi",
        content_type="text/plain",
        server_header="ksr",
    )
    out = parse_message_untrusted(rpl.to_bytes())
    assert out.get("unsupported") == "foo"
    assert out.get("server") == "ksr"
    assert (out.body, out.get("content-type")) == (b"hi", "text/plain")


def test_reply_bytes_are_make_reply_serialized() -> None:
    """The one-pass writer sends the bytes the Response would have been written as."""
    tagged = REQ.replace(b"To: <sip:bob@example.com>", b"t: <sip:bob@example.com> ; tag=q")
    compact = REQ.replace(b"Call-ID: c1", b"i: c1").replace(b"Via: SIP/2.0/TCP", b"v: SIP/2.0/TCP")
    two_to = REQ.replace(b"CSeq: 7", b"To: <sip:x@example.com>\r\nCSeq: 7")
    lumps = [Header("Unsupported", "foo"), Header("X-A", "1", "X-A:   1")]
    cases = [
        (100, "Trying", None, [], b"", None, None, None),
        (200, "OK", None, lumps, b"", None, "ksr 1.0", None),
        (486, "Busy Here", "fixed", [], b"hi", "text/plain", None, None),
        (302, "Moved", None, lumps, b"", None, "ksr", ["sip:a@b", "sip:c@d;x=1"]),
        (404, "Not Found", None, [], b"x", None, None, []),
        (200, "Very OK", None, [], b"", None, "ksr 1.0", None),  # not the usual reason
        (699, "Custom", None, [], b"", None, None, None),  # a code without a usual reason
    ]
    for data in (REQ, tagged, compact, two_to):
        for fix in (False, True):
            for status, reason, tag, extra, body, ctype, server, contacts in cases:
                req = parse_message_untrusted(data)
                assert isinstance(req, Request)
                if fix:
                    req.via_fix = received_fix(req, "198.51.100.7", 5070, True)
                    assert req.via_fix is not None
                want = make_reply(
                    req,
                    status,
                    reason,
                    to_tag=tag,
                    extra_headers=extra,
                    body=body,
                    content_type=ctype,
                    server_header=server,
                    contacts=contacts or (),
                ).to_bytes()
                got = reply_bytes(req, status, reason, tag, extra, body, ctype, server, contacts)
                assert got == want
                # tm's: the same Response, its bytes made beside it
                rpl = reply_message(req, status, reason, tag, extra, body, ctype, server, contacts)
                assert rpl.raw == want
                ref = make_reply(
                    req,
                    status,
                    reason,
                    to_tag=tag,
                    extra_headers=extra,
                    body=body,
                    content_type=ctype,
                    server_header=server,
                    contacts=contacts or (),
                )
                assert [(h.name, h.key, h.value, h.raw) for h in rpl.headers] == [
                    (h.name, h.key, h.value, h.raw) for h in ref.headers
                ]
                assert (rpl.status, rpl.reason, rpl.body) == (status, reason, body)
                rpl.raw = None
                assert rpl.to_bytes() == want


def test_branches() -> None:
    b1, b2 = new_branch(), new_branch()
    assert b1.startswith(BRANCH_COOKIE)
    assert b1 != b2
    assert new_branch("seed") == new_branch("seed")
    # stateless forwarding: a retransmission gets the same branch
    assert stateless_branch(request()) == stateless_branch(request())
    assert stateless_branch(request()).startswith(BRANCH_COOKIE)
