"""textops string helpers: comparisons, lists, finds (no message involved)."""

from __future__ import annotations

import re
from typing import Any

from ksr.core.context import MsgContext
from ksr.kemi.registry import kemi

from .subst import compile_re


def _cmp(a: str, b: str) -> int:
    """Kamailio's convention: 1 equal, -1 first greater, -2 first smaller."""
    if a == b:
        return 1
    return -1 if a > b else -2


class StringOps:
    server: Any

    @kemi()
    def cmp_str(self, ctx: MsgContext, a: str, b: str) -> int:
        """1 if equal; -1 if a sorts after b, -2 if before."""
        return _cmp(a, b)

    @kemi()
    def cmp_istr(self, ctx: MsgContext, a: str, b: str) -> int:
        """cmp_str ignoring case."""
        return _cmp(a.lower(), b.lower())

    @kemi()
    def search_str(self, ctx: MsgContext, text: str, regex: str) -> int:
        """1 if the regex matches text."""
        rx = compile_re(regex)
        return 1 if rx and rx.search(text) else -1

    @kemi()
    def starts_with(self, ctx: MsgContext, text: str, prefix: str) -> int:
        """1 if text starts with prefix."""
        return 1 if text.startswith(prefix) else -1

    @kemi()
    def ends_with(self, ctx: MsgContext, text: str, suffix: str) -> int:
        """1 if text ends with suffix."""
        return 1 if text.endswith(suffix) else -1

    @kemi()
    def str_find(self, ctx: MsgContext, text: str, needle: str) -> int:
        """Position of needle in text counted from 1 (so never 0); -1 if absent."""
        i = text.find(needle) if needle else -1
        return i + 1 if i >= 0 else -1

    @kemi()
    def str_ifind(self, ctx: MsgContext, text: str, needle: str) -> int:
        """str_find ignoring case."""
        return self.str_find(ctx, text.lower(), needle.lower())

    @kemi()
    def str_any_in(self, ctx: MsgContext, text: str, chars: str) -> int:
        """1 if any character of chars occurs in text."""
        return 1 if text and chars and any(c in text for c in chars) else -1

    @kemi()
    def str_all_in(self, ctx: MsgContext, text: str, chars: str) -> int:
        """1 if every character of text is in chars."""
        return 1 if text and all(c in chars for c in text) else -1

    @kemi()
    def in_list(self, ctx: MsgContext, subject: str, items: str, sep: str) -> int:
        """1 if subject equals one of the items of the list (separated by the first char of sep)."""
        if not sep:
            return -1
        return 1 if subject in (x.strip() for x in items.split(sep[0])) else -1

    @kemi()
    def in_list_prefix(self, ctx: MsgContext, subject: str, items: str, sep: str) -> int:
        """1 if one of the list items is a prefix of subject."""
        if not sep:
            return -1
        return (
            1
            if any(x.strip() and subject.startswith(x.strip()) for x in items.split(sep[0]))
            else -1
        )

    @kemi()
    def regex_substring(
        self, ctx: MsgContext, text: str, regex: str, index: int, mcount: int, pvname: str
    ) -> int:
        """Group index of match number mcount (from 0) of regex in text, stored in pvname."""
        try:
            rx = re.compile(regex)
        except re.error:
            return -1
        matches = list(rx.finditer(text))
        if not 0 <= mcount < len(matches):
            return -1
        m = matches[mcount]
        try:
            value = m.group(index)
        except IndexError:
            return -1
        if value is None:
            return -1
        return 1 if self.server.pv.set(ctx, pvname, value) else -1
