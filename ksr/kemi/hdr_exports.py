"""``KSR.hdr``: header changes, recorded as lumps and applied when the message is sent."""

from __future__ import annotations

from collections.abc import Container

from ksr.core.context import MsgContext
from ksr.core.module import Module
from ksr.kemi.registry import XVal, kemi
from ksr.sip.headers import header_key
from ksr.sip.message import Header, Message, parse_header_text


def _insert_at(m: Message, headers: list[Header], index: int) -> None:
    m.headers[index:index] = headers


class HdrExports(Module):
    """KSR.hdr: header changes (applied when the message is sent, as Kamailio's lumps)."""

    name = "core.hdr"
    kemi_name = "hdr"

    @kemi()
    def append(self, ctx: MsgContext, text: str) -> int:
        """Append raw header text ("Name: value\\r\\n") after the last header."""
        hdrs = parse_header_text(text)
        if not hdrs:
            return -1
        ctx.add_lump(lambda m, orig: m.headers.extend(hdrs))
        return 1

    @kemi()
    def insert(self, ctx: MsgContext, text: str) -> int:
        """Insert raw header text before the first header."""
        hdrs = parse_header_text(text)
        if not hdrs:
            return -1
        ctx.add_lump(lambda m, orig: _insert_at(m, hdrs, 0))
        return 1

    @kemi()
    def append_after(self, ctx: MsgContext, text: str, hname: str) -> int:
        """Insert text after the first header named hname."""
        return self._relative(ctx, text, hname, 1)

    @kemi()
    def insert_before(self, ctx: MsgContext, text: str, hname: str) -> int:
        """Insert text before the first header named hname."""
        return self._relative(ctx, text, hname, 0)

    def _relative(self, ctx: MsgContext, text: str, hname: str, offset: int) -> int:
        hdrs = parse_header_text(text)
        key = header_key(hname)
        if not hdrs or not ctx.msg.has(key):
            return -1

        def lump(m: Message, orig: Container[int]) -> None:
            for i, h in enumerate(m.headers):
                if h.key == key:
                    _insert_at(m, hdrs, i + offset)
                    return

        ctx.add_lump(lump)
        return 1

    @kemi()
    def remove(self, ctx: MsgContext, name: str) -> int:
        """Remove all headers with this name (compact forms too). 1 even if none."""
        key = header_key(name)

        def lump(m: Message, orig: Container[int]) -> None:
            m.headers = [h for h in m.headers if h.key != key or id(h) not in orig]

        ctx.add_lump(lump)
        return 1

    @kemi()
    def rmappend(self, ctx: MsgContext, hrm: str, text: str) -> int:
        """Remove headers named hrm, then append text."""
        self.remove(ctx, hrm)
        return self.append(ctx, text)

    @kemi()
    def rminsert(self, ctx: MsgContext, hrm: str, text: str) -> int:
        """Remove headers named hrm, then insert text at the top."""
        self.remove(ctx, hrm)
        return self.insert(ctx, text)

    @kemi()
    def is_present(self, ctx: MsgContext, name: str) -> int:
        """1 if a header with this name exists in the received message, -1 otherwise."""
        return 1 if ctx.msg.has(name) else -1

    @kemi()
    def append_to_reply(self, ctx: MsgContext, text: str) -> int:
        """Add raw header text to the next locally generated reply."""
        hdrs = parse_header_text(text)
        if not hdrs:
            return -1
        ctx.reply_lumps.extend(hdrs)
        return 1

    @kemi()
    def get(self, ctx: MsgContext, name: str) -> XVal:
        """Body of the first header with that name; None/nil if absent."""
        return ctx.msg.get(name)

    @kemi()
    def gete(self, ctx: MsgContext, name: str) -> XVal:
        """Like get, "" if absent."""
        return ctx.msg.get(name) or ""

    @kemi()
    def getw(self, ctx: MsgContext, name: str) -> XVal:
        """Like get, "<null>" if absent."""
        v = ctx.msg.get(name)
        return "<null>" if v is None else v

    @kemi()
    def get_idx(self, ctx: MsgContext, name: str, idx: int) -> XVal:
        """Body of the idx-th header with that name (negative counts from the end)."""
        values = ctx.msg.get_all(name)
        try:
            return values[idx]
        except IndexError:
            return None

    @kemi()
    def gete_idx(self, ctx: MsgContext, name: str, idx: int) -> XVal:
        """Like get_idx, "" if absent."""
        v = self.get_idx(ctx, name, idx)
        return "" if v is None else v

    @kemi()
    def getw_idx(self, ctx: MsgContext, name: str, idx: int) -> XVal:
        """Like get_idx, "<null>" if absent."""
        v = self.get_idx(ctx, name, idx)
        return "<null>" if v is None else v

    @kemi()
    def match_content(self, ctx: MsgContext, hname: str, op: str, value: str, which: str) -> bool:
        """match_content(hname, op eq/ne/sw/in, value, which f/l/a/o): compare header bodies."""
        values = ctx.msg.get_all(hname)
        if not values:
            return False
        v = value.lower()

        def match(x: str) -> bool:
            x = x.lower()
            if op == "eq":
                return x == v
            if op == "ne":
                return x != v
            if op == "sw":
                return x.startswith(v)
            if op == "in":
                return v in x
            return False

        if which.startswith("f"):
            return match(values[0])
        if which.startswith("l"):
            return match(values[-1])
        if which.startswith("a"):
            return all(match(x) for x in values)
        return any(match(x) for x in values)
