"""Property tests: hostile bytes never raise anything but RemoteProtocolError.

Inputs are random bytes and valid messages (the RFC 4475 corpus and a typical INVITE) with
random mutations: byte flips, insertions of SIP-significant characters, cut points, duplicated
and deleted slices.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksr.modules.sanity.checks import ALL_CHECKS, Job, run_checks
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.framing import StreamFramer
from ksr.sip.message import Request, parse_message_untrusted
from tests.support import RFC4475, needs_rfc4475

SEEDS = [p.read_bytes() for p in sorted(RFC4475.glob("*.dat"))]
SPECIAL = [
    b"\r\n",
    b"\n",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b'"',
    b"\\",
    b" ",
    b"\t",
    b"@",
    b"?",
    b"[",
    b"]",
    b"%",
    b"=",
    b"/",
    b"\x00",
    b"\xff",
    b"0",
    b"9" * 30,
    b"SIP/2.0",
    b"Content-Length: ",
    b"\r\n ",
    "٣".encode(),
]

FUZZ = settings(
    max_examples=int(os.environ.get("KSR_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.integers(0, 4))
        if op == 0:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.sampled_from(SPECIAL))
        elif op == 2:
            del data[pos : pos + draw(st.integers(1, 40))]
        elif op == 3:
            end = min(len(data), pos + draw(st.integers(1, 80)))
            data[pos:pos] = data[pos:end]
        else:
            del data[pos:]
    return bytes(data)


def only_protocol_errors(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except RemoteProtocolError:
        pass


def exercise(data: bytes) -> None:
    try:
        m = parse_message_untrusted(data)
    except RemoteProtocolError as err:
        partial = getattr(err, "partial", None)
        if partial is None:
            return
        m = partial
    only_protocol_errors(lambda: m.top_via)
    only_protocol_errors(lambda: m.vias)
    only_protocol_errors(lambda: m.cseq)
    only_protocol_errors(lambda: m.from_.uri)
    only_protocol_errors(lambda: m.to.tag)
    only_protocol_errors(lambda: m.call_id)
    if isinstance(m, Request):
        only_protocol_errors(lambda: m.parsed_uri)
    m.to_bytes()
    # the sanity checks answer, they never raise
    run_checks(Job(m, None, "udp", 15, frozenset({"foo"})), ALL_CHECKS)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    exercise(data)
    exercise(b"INVITE sip:a@b SIP/2.0\r\n" + data)


@FUZZ
@needs_rfc4475
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    exercise(data)


@FUZZ
@needs_rfc4475
@given(mutated(), st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_stream_framer(data: bytes, cuts: list[int]) -> None:
    f = StreamFramer(max_size=4000)
    pos = 0
    try:
        for size in cuts + [len(data)]:
            f.feed(data[pos : pos + size])
            pos += size
            while (m := f.next_message()) is not None:
                if m != b"\r\n\r\n":
                    exercise_stream(m)
    except RemoteProtocolError:
        pass


def exercise_stream(m: bytes) -> None:
    try:
        parse_message_untrusted(m, datagram=False)
    except RemoteProtocolError:
        pass
