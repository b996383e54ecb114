"""Message text helpers for textops: the message as a string, and changes written back into a
``Message`` inside a lump (start line, headers and body, with Content-Length kept right)."""

from __future__ import annotations

from ksr.sip.message import Header, Message, Request, Response, parse_header_text

ENC = "surrogateescape"


def text_of(m: Message) -> str:
    return m.to_bytes().decode("utf-8", ENC)


def head_of(m: Message) -> str:
    """Start line and headers, ending with the blank line."""
    t = text_of(m)
    head, sep, _ = t.partition("\r\n\r\n")
    return head + sep


def body_text(m: Message) -> str:
    return m.body.decode("utf-8", ENC)


def set_body(m: Message, body: bytes, content_type: str | None = None) -> None:
    """Replace the body, fixing Content-Length (and Content-Type if given)."""
    m.body = body
    if content_type is not None:
        m.set_header("Content-Type", content_type)
    m.set_header("Content-Length", str(len(body)))
    m.raw = None


def set_text(m: Message, text: str) -> bool:
    """Write a whole message text back into m; False if the start line became unreadable."""
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) < 3:
        return False
    if isinstance(m, Request):
        m.method, m.uri, m.version = first[0], first[1], first[2]
    elif isinstance(m, Response):
        if not first[1].isdigit():
            return False
        m.version, m.status, m.reason = first[0], int(first[1]), first[2]
    set_headers_text(m, "\r\n".join(lines[1:]))
    set_body(m, body.encode("utf-8", ENC))
    return True


def set_headers_text(m: Message, text: str) -> None:
    """Header lines back into m; unchanged lines keep their Header object, so later lumps
    (remove_hf...) still see them as received headers."""
    old: dict[str, list[Header]] = {}
    for h in m.headers:
        old.setdefault(h.line(), []).append(h)
    headers = parse_header_text(text, keep_raw=True)
    for i, h in enumerate(headers):
        same = old.get(h.raw or "")
        if same:
            headers[i] = same.pop(0)
        else:
            h.raw = None  # a changed line is written anew as "Name: value"
    m.headers = headers
    m.raw = None
    m.forget_parsed()
