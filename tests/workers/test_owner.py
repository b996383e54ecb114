"""Which worker owns a message (ksr/sip/owner.py) and how worker 0 merges RPC answers."""

from __future__ import annotations

import pytest

from ksr.core.rpc_merge import merge
from ksr.sip.message import parse_message_untrusted
from ksr.sip.owner import call_id_owner, message_owner, parsed_owner

REQ = (
    b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
    b"Call-ID: %s\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)
RPL = (
    b"SIP/2.0 200 OK\r\n%s\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
    b"i: abc\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize(
    ("data", "workers", "owner"),
    [
        (REQ % b"abc", 4, call_id_owner(b"abc", 4)),
        (REQ % b"abc  ", 4, call_id_owner(b"abc", 4)),  # trailing blanks are not part of it
        (REQ.replace(b"Call-ID", b"call-id") % b"xyz", 3, call_id_owner(b"xyz", 3)),
        (
            REQ.replace(b"Call-ID: %s", b"i:%s") % b"xyz",
            3,
            call_id_owner(b"xyz", 3),
        ),  # compact form
        (REQ.replace(b"Call-ID: %s\r\n", b""), 2, None),  # no Call-ID: handled where it arrived
        (RPL % b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx;ksrw=3", 4, 3),  # our Via mark
        (RPL % b"v: SIP/2.0/UDP 192.0.2.1;KSRW=1;rport", 4, 1),
        (
            RPL % b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx;ksrw=7",
            4,
            call_id_owner(b"abc", 4),
        ),
        # spellings the quick path does not take go the long way, with the same answers
        (RPL % b"v: SIP/2.0/UDP 192.0.2.1;ksrw=1\r\nVia: SIP/2.0/UDP 192.0.2.2;ksrw=2", 4, 1),
        (RPL % b"Via: SIP/2.0/UDP 192.0.2.1;kSrW = 2", 4, 2),
        (RPL % b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx", 4, call_id_owner(b"abc", 4)),
        (REQ.replace(b"Call-ID: %s", b"Call-ID:\t %s\t") % b"tabs", 5, call_id_owner(b"tabs", 5)),
        (REQ.replace(b"\r\n", b"\n") % b"lf", 5, call_id_owner(b"lf", 5)),  # LF-only lines
        (REQ % b"", 2, None),  # an empty Call-ID: the parser rejects it where it arrived
        # only the top Via counts: a mark further down is another proxy's business
        (
            RPL % b"Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKy, SIP/2.0/UDP 192.0.2.1;ksrw=1",
            4,
            call_id_owner(b"abc", 4),
        ),
    ],
)
def test_message_owner(data: bytes, workers: int, owner: int | None) -> None:
    assert message_owner(data, workers) == owner


def test_a_call_id_in_the_body_is_not_read() -> None:
    msg = b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: real\r\nContent-Length: 13\r\n\r\nCall-ID: fake"
    assert message_owner(msg, 1000) == call_id_owner(b"real", 1000)


def test_merges() -> None:
    assert merge({"a": 1, "b": [1], "c": "2"}, {"a": 2, "b": [2], "c": "3", "d": 0}) == {
        "a": 3,
        "b": [1, 2],
        "c": "5",
        "d": 0,
    }
    # statistics are merged by kind instead (tests/metrics/test_stats_merge.py)


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_call_ids_that_differ_in_one_digit_spread_over_the_workers(workers: int) -> None:
    """sipp's Call-IDs (call number, pid, address): Adler-32's low bits alone would put
    every call of one sipp on one worker."""
    for pid in (4242, 23481):
        shares = [call_id_owner(f"{k}-{pid}@127.0.0.1", workers) for k in range(1, 13 * workers)]
        assert min(shares.count(w) for w in range(workers)) >= 3, shares


FULL = (
    b"%s\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n%s"
    b"CSeq: 1 %s\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize(
    ("start", "top", "call_id", "method"),
    [
        (b"INVITE sip:b@example.com SIP/2.0", b"", b"Call-ID: abc\r\n", b"INVITE"),
        (b"BYE sip:b@example.com SIP/2.0", b"", b"i:  x-1@h\t\r\n", b"BYE"),
        (b"REGISTER sip:example.com SIP/2.0", b"", b"Call-ID: reg\r\n", b"REGISTER"),
        (
            b"SIP/2.0 200 OK",
            b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx;ksrw=3\r\n",
            b"Call-ID: c\r\n",
            b"INVITE",
        ),
        (
            b"SIP/2.0 180 Ringing",
            b"v: SIP/2.0/UDP 192.0.2.1;KSRW=1;rport\r\n",
            b"Call-ID: c\r\n",
            b"INVITE",
        ),
        (
            b"SIP/2.0 200 OK",
            b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx;ksrw=7\r\n",
            b"Call-ID: c\r\n",
            b"BYE",
        ),
        (b"SIP/2.0 200 OK", b"Via: SIP/2.0/UDP 192.0.2.1;kSrW = 2\r\n", b"Call-ID: d\r\n", b"BYE"),
        (b"SIP/2.0 200 OK", b"Via: SIP/2.0/UDP 192.0.2.1;ksrw=x1\r\n", b"Call-ID: d\r\n", b"BYE"),
        (
            b"SIP/2.0 200 OK",
            b"Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKy, SIP/2.0/UDP 192.0.2.1;ksrw=1\r\n",
            b"Call-ID: e\r\n",
            b"INVITE",
        ),
        (
            b"OPTIONS sip:b@example.com SIP/2.0",
            b"",
            b"Call-ID: " + b"\xc3\xa9" * 20 + b"\r\n",
            b"OPTIONS",
        ),
    ],
)
@pytest.mark.parametrize("workers", [2, 4])
def test_parsed_owner_is_message_owner(
    start: bytes, top: bytes, call_id: bytes, method: bytes, workers: int
) -> None:
    """The pipeline reads the owner from the parse (Pipeline.receive); the bytes' reading
    (message_owner) is the reference, and the kernel's program computes the same hash."""
    data = FULL % (start + (b"\r\n" + top.rstrip(b"\r\n") if top else b""), call_id, method)
    msg = parse_message_untrusted(data)
    assert parsed_owner(msg, workers) == message_owner(data, workers)
