"""REGISTER builders and a client for the registrar tests."""

from __future__ import annotations

import itertools

from ksr.sip.message import Response
from tests.support import UdpPeer

_seq = itertools.count(1)


def register(
    port: int,
    user: str = "alice",
    domain: str = "127.0.0.1",
    contacts: list[str] | None = None,
    call_id: str = "reg-1",
    cseq: int = 1,
    extra: list[str] | None = None,
) -> str:
    """A REGISTER for user@domain from 127.0.0.1:port; ``contacts`` are raw Contact values
    (default: one contact at the peer's address), [] for none."""
    if contacts is None:
        contacts = [f"<sip:{user}@127.0.0.1:{port}>"]
    lines = [
        f"REGISTER sip:{domain} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-r{next(_seq)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{domain}>;tag=ft{call_id}",
        f"To: <sip:{user}@{domain}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    lines += extra or []
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


def invite(port: int, ruri: str, call_id: str = "inv-1", extra: list[str] | None = None) -> str:
    lines = [
        f"INVITE {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-i{next(_seq)};rport",
        "Max-Forwards: 70",
        f"From: <sip:bob@127.0.0.1>;tag=ft{call_id}",
        f"To: <{ruri}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:bob@127.0.0.1:{port}>",
        *(extra or []),
        "Content-Length: 0",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def contacts_of(rpl: Response) -> list[str]:
    """The Contact values of a reply, one per binding."""
    from ksr.sip.headers import split_commas

    out: list[str] = []
    for v in rpl.get_all("contact"):
        out.extend(split_commas(v))
    return out


async def exchange(peer: UdpPeer, addr: tuple[str, int], text: str) -> Response:
    await peer.send(text, addr)
    return await peer.recv_reply()
