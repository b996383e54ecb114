"""textops body functions: set/replace the body, local reply bodies, multipart parts, SDP hold."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from ksr.core.context import MsgContext
from ksr.kemi.registry import kemi
from ksr.sip.message import Message

from .msgtext import set_body
from .multipart import DEFAULT_BOUNDARY, Part, boundary_of, find_part, join_parts, split_parts


def _hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text.replace(" ", ""))
    except ValueError:
        return None


def _parts_of(m: Message) -> tuple[str, list[Part]] | None:
    b = boundary_of(m.get("content-type"))
    return (b, split_parts(m.body, b)) if b else None


def _as_multipart(m: Message, boundary: str) -> list[Part]:
    """The body as a list of parts: converted from a single body if needed."""
    got = _parts_of(m)
    if got is not None:
        return got[1]
    if not m.body:
        return []
    ctype = m.get("content-type") or "text/plain"
    return [Part([("Content-Type", ctype)], m.body)]


def _sdp_on_hold(sdp: str) -> bool:
    session_hold = False
    in_audio = None  # None = session level
    audio_hold = False
    audio_seen = False
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if in_audio and audio_hold:
                return True
            in_audio = line[2:].startswith("audio")
            audio_seen = audio_seen or in_audio
            audio_hold = session_hold
            continue
        held = line in ("a=sendonly", "a=inactive") or (
            line.startswith("c=") and line.endswith(" 0.0.0.0")
        )
        if in_audio is None and held:
            session_hold = True
        elif in_audio and held:
            audio_hold = True
    return bool(in_audio and audio_hold) or (session_hold and audio_seen)


class BodyOps:
    server: Any

    def _set_body_bytes(self, ctx: MsgContext, body: bytes, ctype: str) -> int:
        ctx.add_lump(lambda m, orig: set_body(m, body, ctype or None))
        return 1

    @kemi()
    def set_body(self, ctx: MsgContext, body: str, ctype: str) -> int:
        """Replace the body (and Content-Type when ctype is given)."""
        return self._set_body_bytes(ctx, body.encode("utf-8", "surrogateescape"), ctype)

    @kemi()
    def set_body_hex(self, ctx: MsgContext, hexbody: str, ctype: str) -> int:
        """set_body from a hex string."""
        b = _hex(hexbody)
        return -1 if b is None else self._set_body_bytes(ctx, b, ctype)

    @kemi()
    def set_reply_body(self, ctx: MsgContext, body: str, ctype: str) -> int:
        """Body and Content-Type of the next locally generated reply."""
        if not ctx.is_request:
            return -1
        ctx.reply_body = (body.encode("utf-8", "surrogateescape"), ctype or "text/plain")
        return 1

    @kemi()
    def set_reply_body_hex(self, ctx: MsgContext, hexbody: str, ctype: str) -> int:
        """set_reply_body from a hex string."""
        b = _hex(hexbody)
        if b is None or not ctx.is_request:
            return -1
        ctx.reply_body = (b, ctype or "application/octet-stream")
        return 1

    @kemi()
    def has_body(self, ctx: MsgContext) -> int:
        """1 if the message has a non-empty body."""
        return 1 if ctx.msg.body else -1

    @kemi()
    def has_body_type(self, ctx: MsgContext, ctype: str) -> int:
        """1 if the body (or a multipart part) has this content type."""
        if not ctx.msg.body:
            return -1
        want = ctype.strip().lower()
        own = (ctx.msg.get("content-type") or "").split(";")[0].strip().lower()
        if own == want:
            return 1
        got = _parts_of(ctx.msg)
        return 1 if got and find_part(got[1], want) else -1

    @kemi()
    def filter_body(self, ctx: MsgContext, ctype: str) -> int:
        """Keep only the multipart part of type ctype as the body."""
        got = _parts_of(ctx.msg)
        part = find_part(got[1], ctype) if got else None
        if part is None:
            return -1
        body, pct = (
            part.body,
            next((v for k, v in part.headers if k.lower() == "content-type"), ctype),
        )
        ctx.add_lump(lambda m, orig: set_body(m, body, pct))
        return 1

    @kemi()
    def is_audio_on_hold(self, ctx: MsgContext) -> int:
        """1 if the SDP puts audio on hold (sendonly/inactive or c=0.0.0.0), -1 otherwise."""
        sdp: bytes | None = None
        own = (ctx.msg.get("content-type") or "").split(";")[0].strip().lower()
        if own == "application/sdp":
            sdp = ctx.msg.body
        else:
            got = _parts_of(ctx.msg)
            part = find_part(got[1], "application/sdp") if got else None
            sdp = part.body if part else None
        if not sdp:
            return -1
        return 1 if _sdp_on_hold(sdp.decode("utf-8", "replace")) else -1

    # -- multipart ---------------------------------------------------------------------------------
    def _multipart(self, ctx: MsgContext, boundary: str, add: Part | None) -> int:
        b = boundary or DEFAULT_BOUNDARY

        def lump(m: Message, orig: Container[int]) -> None:
            got = _parts_of(m)
            bnd = got[0] if got else b
            parts = _as_multipart(m, bnd)
            if add is not None:
                parts.append(add)
            set_body(m, join_parts(parts, bnd), f"multipart/mixed;boundary={bnd}")

        ctx.add_lump(lump)
        return 1

    @kemi()
    def set_body_multipart_mode(self, ctx: MsgContext) -> int:
        """Turn the body into a multipart/mixed body (the old body becomes the first part)."""
        return self._multipart(ctx, "", None)

    @kemi()
    def set_body_multipart_boundary(self, ctx: MsgContext, boundary: str) -> int:
        """set_body_multipart_mode with the given boundary."""
        return self._multipart(ctx, boundary, None)

    @kemi()
    def set_body_multipart_content(self, ctx: MsgContext, body: str, ctype: str) -> int:
        """Make the body multipart and add a part."""
        return self._multipart(ctx, "", Part([("Content-Type", ctype)], body.encode()))

    @kemi()
    def set_body_multipart(self, ctx: MsgContext, body: str, ctype: str, boundary: str) -> int:
        """Make the body multipart with boundary and add a part."""
        return self._multipart(ctx, boundary, Part([("Content-Type", ctype)], body.encode()))

    def _append(self, ctx: MsgContext, body: bytes | None, ctype: str, cd: str) -> int:
        if body is None:
            return -1
        headers = [("Content-Type", ctype)]
        if cd:
            headers.append(("Content-Disposition", cd))
        return self._multipart(ctx, "", Part(headers, body))

    @kemi()
    def append_body_part(self, ctx: MsgContext, body: str, ctype: str) -> int:
        """Append a multipart part (the body is made multipart if needed)."""
        return self._append(ctx, body.encode(), ctype, "")

    @kemi()
    def append_body_part_cd(self, ctx: MsgContext, body: str, ctype: str, cd: str) -> int:
        """append_body_part with a Content-Disposition."""
        return self._append(ctx, body.encode(), ctype, cd)

    @kemi()
    def append_body_part_hex(self, ctx: MsgContext, hexbody: str, ctype: str) -> int:
        """append_body_part from a hex string."""
        return self._append(ctx, _hex(hexbody), ctype, "")

    @kemi()
    def append_body_part_hex_cd(self, ctx: MsgContext, hexbody: str, ctype: str, cd: str) -> int:
        """append_body_part_hex with a Content-Disposition."""
        return self._append(ctx, _hex(hexbody), ctype, cd)

    @kemi()
    def remove_body_part(self, ctx: MsgContext, ctype: str) -> int:
        """Remove the multipart part of type ctype."""
        got = _parts_of(ctx.msg)
        if not got or find_part(got[1], ctype) is None:
            return -1

        def lump(m: Message, orig: Container[int]) -> None:
            now = _parts_of(m)
            if now is None:
                return
            bnd, parts = now
            parts = [p for p in parts if p.content_type != ctype.strip().lower()]
            set_body(m, join_parts(parts, bnd))

        ctx.add_lump(lump)
        return 1

    def _get_part(self, ctx: MsgContext, ctype: str, pvname: str, raw: bool) -> int:
        own = (ctx.msg.get("content-type") or "").split(";")[0].strip().lower()
        if own == ctype.strip().lower() and ctx.msg.body:
            value = ctx.msg.body
        else:
            got = _parts_of(ctx.msg)
            part = find_part(got[1], ctype) if got else None
            if part is None:
                return -1
            value = part.to_bytes() if raw else part.body
        return (
            1 if self.server.pv.set(ctx, pvname, value.decode("utf-8", "surrogateescape")) else -1
        )

    @kemi()
    def get_body_part(self, ctx: MsgContext, ctype: str, pvname: str) -> int:
        """Store the body of the part of type ctype in the PV pvname."""
        return self._get_part(ctx, ctype, pvname, False)

    @kemi()
    def get_body_part_raw(self, ctx: MsgContext, ctype: str, pvname: str) -> int:
        """Store the part of type ctype, with its headers, in the PV pvname."""
        return self._get_part(ctx, ctype, pvname, True)
