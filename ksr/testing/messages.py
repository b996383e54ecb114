"""Building SIP requests for script tests from a few fields."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping


def build_request(
    method: str = "OPTIONS",
    ruri: str = "sip:ksr@127.0.0.1",
    *,
    from_uri: str = "sip:alice@example.com",
    to_uri: str | None = None,
    src: tuple[str, int] = ("127.0.0.1", 5080),
    proto: str = "UDP",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body: str | bytes = b"",
    content_type: str | None = None,
    max_forwards: int | None = 70,
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str | None = "fromtag",
    to_tag: str | None = None,
    contact: str | None = "",
) -> bytes:
    """Raw bytes of a well-formed request; every field has a sensible default.

    ``headers`` adds (or, with a value of ``None`` in a mapping, leaves out) headers;
    ``max_forwards=None`` sends no Max-Forwards, ``contact=None`` no Contact.
    """
    n = secrets.token_hex(6)  # unique branch and Call-ID per request
    ip, port = src
    extra = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    to_uri = to_uri or ruri
    payload = body.encode() if isinstance(body, str) else body
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/{proto.upper()} {ip}:{port};branch=z9hG4bK-ksrtest-{n};rport",
    ]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    lines.append(f"From: <{from_uri}>" + (f";tag={from_tag}" if from_tag else ""))
    lines.append(f"To: <{to_uri}>" + (f";tag={to_tag}" if to_tag else ""))
    lines.append(f"Call-ID: {call_id or f'ksrtest-{n}@{ip}'}")
    lines.append(f"CSeq: {cseq} {method}")
    if contact is not None:
        user = from_uri.split(":", 1)[-1].split("@", 1)[0]
        lines.append(f"Contact: {contact or f'<sip:{user}@{ip}:{port}>'}")
    for name, value in extra:
        if value is not None:
            lines.append(f"{name}: {value}")
    if payload and content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
