"""Parse rate of a typical INVITE with SDP, in messages per second (one core).

    python bench/parse_rate.py [seconds-per-case]

Three cases: parse only; parse and read what a proxy reads on every request (top Via, CSeq,
From/To tags, Call-ID); parse and serialize back (unchanged message and a changed one).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ksr.sip.message import parse_message_untrusted

SDP = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=sendrecv\r\n"
)

INVITE = (
    "INVITE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    "To: <sip:bob@example.com>\r\n"
    "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@192.0.2.10:5060>\r\n"
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
    "Supported: replaces, timer\r\n"
    "User-Agent: bench-ua/1.0\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n"
    "\r\n" + SDP
).encode()


def parse_only() -> None:
    parse_message_untrusted(INVITE)


def parse_access() -> None:
    m = parse_message_untrusted(INVITE)
    m.top_via.branch  # noqa: B018
    m.cseq.number  # noqa: B018
    m.from_.tag  # noqa: B018
    m.to.tag  # noqa: B018
    m.call_id  # noqa: B018


def parse_serialize() -> None:
    parse_message_untrusted(INVITE).to_bytes()


def parse_change_serialize() -> None:
    m = parse_message_untrusted(INVITE)
    m.set_header("Max-Forwards", "69")
    m.to_bytes()


def rate(fn: Callable[[], None], seconds: float) -> float:
    n = 0
    batch = 500
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    print(f"INVITE with SDP, {len(INVITE)} bytes, {seconds:g}s per case")
    for name, fn in [
        ("parse only", parse_only),
        ("parse + top_via/cseq/from/to/call-id", parse_access),
        ("parse + serialize (unchanged)", parse_serialize),
        ("parse + set_header + serialize", parse_change_serialize),
    ]:
        print(f"  {name:40s} {rate(fn, seconds):10,.0f} msg/s")


if __name__ == "__main__":
    main()
