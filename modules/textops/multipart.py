"""Multipart bodies (RFC 2046): split into parts, find a part by content type, rebuild."""

from __future__ import annotations

from dataclasses import dataclass

from ksr.sip.headers import parse_params

DEFAULT_BOUNDARY = "unique-boundary-1"


@dataclass(slots=True)
class Part:
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def content_type(self) -> str:
        for k, v in self.headers:
            if k.lower() in ("content-type", "c"):
                return v.split(";")[0].strip().lower()
        return "text/plain"

    def to_bytes(self) -> bytes:
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers)
        return head.encode() + b"\r\n" + self.body


def boundary_of(content_type: str | None) -> str | None:
    if not content_type or not content_type.lower().lstrip().startswith("multipart/"):
        return None
    _, _, params = content_type.partition(";")
    b = parse_params(params).get("boundary")
    return b.strip('"') if b else None


def split_parts(body: bytes, boundary: str) -> list[Part]:
    delim = b"--" + boundary.encode()
    chunks = body.split(delim)
    parts: list[Part] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        c = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        if c.endswith(b"\r\n"):
            c = c[:-2]
        head, sep, pbody = c.partition(b"\r\n\r\n")
        if not sep:
            head, pbody = b"", c
        headers = []
        for line in head.decode("utf-8", "replace").split("\r\n"):
            k, colon, v = line.partition(":")
            if colon:
                headers.append((k.strip(), v.strip()))
        parts.append(Part(headers, pbody))
    return parts


def join_parts(parts: list[Part], boundary: str) -> bytes:
    out = b""
    for p in parts:
        out += b"--" + boundary.encode() + b"\r\n" + p.to_bytes() + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def find_part(parts: list[Part], ctype: str) -> Part | None:
    want = ctype.strip().lower()
    return next((p for p in parts if p.content_type == want), None)
