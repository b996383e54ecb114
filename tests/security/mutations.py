"""Seeded mutations of SIP messages for the malformed-input tests (sans-IO, deterministic)."""

from __future__ import annotations

import random

GARBAGE = [
    b"",
    b"<",
    b">",
    b";;;",
    b"\x00",
    b"\xff\xfe",
    b"<sip:>",
    b"sip:@",
    b"x" * 3000,
    b'"',
    b"<sip:a@[::1>",
    b"1 2 3",
    b"-1",
    b"99999999999999999999",
    b"sip:a@b:99999",
    b"<sip:a@host;lr",
    b"tag=",
    b";tag",
    b"a@b@c",
    b"<tel:+1>",
    b"sip:a@\xc3(",
    b"SIP/2.0/UDP evil.invalid;received=evil.invalid",
]

_HEAD = b"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{n};rport\r\nMax-Forwards: 70\r\n"

BASES = [
    b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\n" + _HEAD + b"From: <sip:alice@127.0.0.1>;tag=a\r\n"
    b"To: <sip:bob@127.0.0.1>\r\nCall-ID: c1@x\r\nCSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@127.0.0.1:5080>\r\nContent-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\nv=0\n",
    b"BYE sip:bob@127.0.0.1 SIP/2.0\r\n" + _HEAD + b"Route: <sip:127.0.0.1;lr>\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>;tag=b\r\n"
    b"Call-ID: c1@x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    b"ACK sip:bob@127.0.0.1 SIP/2.0\r\n" + _HEAD + b"From: <sip:alice@127.0.0.1>;tag=a\r\n"
    b"To: <sip:bob@127.0.0.1>;tag=b\r\nCall-ID: c1@x\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
    b"CANCEL sip:bob@127.0.0.1 SIP/2.0\r\n" + _HEAD + b"From: <sip:alice@127.0.0.1>;tag=a\r\n"
    b"To: <sip:bob@127.0.0.1>\r\nCall-ID: c1@x\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
    b"REGISTER sip:127.0.0.1 SIP/2.0\r\n" + _HEAD + b"From: <sip:alice@127.0.0.1>;tag=a\r\n"
    b"To: <sip:alice@127.0.0.1>\r\nCall-ID: r1@x\r\nCSeq: 1 REGISTER\r\n"
    b"Contact: <sip:alice@127.0.0.1:5080>;expires=60\r\n"
    b'Authorization: Digest username="alice", realm="127.0.0.1", nonce="abc", '
    b'uri="sip:127.0.0.1", response="0123456789abcdef0123456789abcdef", qop=auth, '
    b'nc=00000001, cnonce="x"\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n',
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-5\r\n"
    b"Via: SIP/2.0/UDP evil.invalid:5060;branch=z9hG4bK-6\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>;tag=b\r\nCall-ID: c1@x\r\n"
    b"CSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:5090>\r\nContent-Length: 0\r\n\r\n",
    b"SUBSCRIBE sip:bob@127.0.0.1 SIP/2.0\r\n" + _HEAD + b"From: <sip:alice@127.0.0.1>;tag=a\r\n"
    b"To: <sip:bob@127.0.0.1>\r\nCall-ID: s1@x\r\nCSeq: 1 SUBSCRIBE\r\nEvent: presence\r\n"
    b"Contact: <sip:alice@127.0.0.1:5080>\r\nContent-Length: 0\r\n\r\n",
]


def base(rng: random.Random, port: int) -> bytes:
    m = rng.choice(BASES)
    return m.replace(b"{port}", str(port).encode()).replace(b"{n}", str(rng.random())[2:].encode())


def mutate(rng: random.Random, msg: bytes) -> bytes:
    """One change to the header part: a header dropped, emptied, doubled, cut, garbled..."""
    head_text, sep, body = msg.partition(b"\r\n\r\n")
    head = head_text.split(b"\r\n")
    i = rng.randrange(len(head))
    name = head[i].split(b":", 1)[0]
    op = rng.randrange(7)
    if op == 0 and i > 0:
        del head[i]
    elif op == 1 and i > 0:
        head[i] = name + b": " + rng.choice(GARBAGE)
    elif op == 2 and i > 0:
        head.insert(i, head[i])
    elif op == 3 and head[i]:
        line = bytearray(head[i])
        for _ in range(rng.randrange(1, 4)):
            line[rng.randrange(len(line))] = rng.randrange(256)
        head[i] = bytes(line)
    elif op == 4 and i > 0:
        head[i] = head[i][: rng.randrange(len(head[i]) + 1)]
    elif op == 5:
        head[0] = rng.choice(GARBAGE) + b" " + head[0]
    else:
        head[i] = head[i] + rng.choice(GARBAGE)
    return b"\r\n".join(head) + sep + body


def messages(seed: int, count: int, port: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        m = base(rng, port)
        for _ in range(rng.randrange(1, 3)):
            m = mutate(rng, m)
        out.append(m)
    return out
