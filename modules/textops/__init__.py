"""textops: regex searches and text changes on the message, plus string helpers (KSR.textops).

Searches read the message as received. Changes are lumps applied when the message is sent, so
``is_present_hf`` still answers 1 after ``remove_hf`` (as in Kamailio). Regexes are matched
case-insensitively with ``^``/``$`` at line boundaries (Kamailio's REG_ICASE|REG_NEWLINE).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container

from ksr.core.context import MsgContext
from ksr.core.lumps import rewrite_headers
from ksr.core.module import Module
from ksr.kemi.registry import kemi
from ksr.sip.headers import header_key
from ksr.sip.message import Message

from .body import BodyOps
from .msgtext import body_text, head_of, set_body, set_text, text_of
from .strings import StringOps
from .subst import Subst, compile_re, parse_subst

Lump = Callable[[Message, Container[int]], None]


def _originals(m: Message, orig: Container[int]) -> list[int]:
    return [i for i, h in enumerate(m.headers) if id(h) in orig]


class Textops(StringOps, BodyOps, Module):
    name = "textops"

    # -- searches ---------------------------------------------------------------------------------
    @kemi()
    def search(self, ctx: MsgContext, regex: str) -> int:
        """1 if the regex matches somewhere in the message, -1 otherwise."""
        rx = compile_re(regex)
        return 1 if rx and rx.search(text_of(ctx.msg)) else -1

    @kemi()
    def search_body(self, ctx: MsgContext, regex: str) -> int:
        """1 if the regex matches in the body."""
        rx = compile_re(regex)
        return 1 if rx and ctx.msg.body and rx.search(body_text(ctx.msg)) else -1

    @kemi()
    def search_hf(self, ctx: MsgContext, hname: str, regex: str, flags: str) -> int:
        """1 if the regex matches the body of a header hname (flags: f first, l last, a all)."""
        rx = compile_re(regex)
        values = ctx.msg.get_all(hname)
        if rx is None or not values:
            return -1
        if "f" in flags:
            values = values[:1]
        elif "l" in flags:
            values = values[-1:]
        return 1 if any(rx.search(v) for v in values) else -1

    def _insert_after_match(self, ctx: MsgContext, regex: str, text: str, body: bool) -> int:
        rx = compile_re(regex)
        src = body_text(ctx.msg) if body else text_of(ctx.msg)
        if rx is None or not rx.search(src):
            return -1

        def lump(m: Message, orig: Container[int]) -> None:
            t = body_text(m) if body else text_of(m)
            mt = rx.search(t)
            if mt is None:
                return
            new = t[: mt.end()] + text + t[mt.end() :]
            if body:
                set_body(m, new.encode("utf-8", "surrogateescape"))
            else:
                set_text(m, new)

        ctx.add_lump(lump)
        return 1

    @kemi()
    def search_append(self, ctx: MsgContext, regex: str, text: str) -> int:
        """Insert text after the first match in the message."""
        return self._insert_after_match(ctx, regex, text, False)

    @kemi()
    def search_append_body(self, ctx: MsgContext, regex: str, text: str) -> int:
        """Insert text after the first match in the body."""
        return self._insert_after_match(ctx, regex, text, True)

    @kemi()
    def is_present_hf(self, ctx: MsgContext, hname: str) -> int:
        """1 if a header with this name is in the received message."""
        return 1 if ctx.msg.has(hname.strip()) else -1

    @kemi()
    def is_present_hf_re(self, ctx: MsgContext, regex: str) -> int:
        """1 if a header name matches the regex."""
        rx = compile_re(regex)
        return 1 if rx and any(rx.search(h.name) for h in ctx.msg.headers) else -1

    # -- substitutions -----------------------------------------------------------------------------
    def _subst_lump(self, ctx: MsgContext, expr: str | Subst | None, part: str) -> int:
        sub = parse_subst(expr) if isinstance(expr, str) else expr
        if sub is None:
            return -1
        probe = {"msg": text_of, "body": body_text, "hdrs": head_of}[part](ctx.msg)
        if not sub.regex.search(probe):
            return -1

        def lump(m: Message, orig: Container[int]) -> None:
            if part == "msg":
                set_text(m, sub.apply(text_of(m))[0])
            elif part == "body":
                set_body(m, sub.apply(body_text(m))[0].encode("utf-8", "surrogateescape"))
            else:
                set_text(m, sub.apply(head_of(m))[0] + body_text(m))

        ctx.add_lump(lump)
        return 1

    @kemi()
    def subst(self, ctx: MsgContext, expr: str) -> int:
        """subst("/re/repl/flags") over the whole message: 1 replaced, -1 no match."""
        return self._subst_lump(ctx, expr, "msg")

    @kemi()
    def subst_body(self, ctx: MsgContext, expr: str) -> int:
        """subst over the body."""
        return self._subst_lump(ctx, expr, "body")

    @kemi()
    def subst_uri(self, ctx: MsgContext, expr: str) -> int:
        """subst over the R-URI (changed at once)."""
        sub = parse_subst(expr)
        if sub is None or not ctx.is_request or not ctx.ruri:
            return -1
        new, n = sub.apply(ctx.ruri)
        if not n:
            return -1
        ctx.ruri = new
        return 1

    @kemi()
    def subst_user(self, ctx: MsgContext, expr: str) -> int:
        """subst over the R-URI user part (changed at once)."""
        sub = parse_subst(expr)
        if sub is None or not ctx.is_request:
            return -1
        user = self.server.pv.get(ctx, "$rU")
        new, n = sub.apply(str(user or ""))
        if not n:
            return -1
        return 1 if self.server.pv.set(ctx, "$rU", new) else -1

    @kemi()
    def subst_hf(self, ctx: MsgContext, hname: str, expr: str, flags: str) -> int:
        """subst over header bodies of hname (flags: f first header, else all)."""
        sub = parse_subst(expr)
        key = header_key(hname.strip())
        if sub is None or not any(sub.regex.search(v) for v in ctx.msg.get_all(key)):
            return -1

        def change(value: str) -> str | None:
            new, n = sub.apply(value)
            return new if n else None

        ctx.add_lump(rewrite_headers(key, change, first_only="f" in flags))
        return 1

    @kemi()
    def subst_v(self, ctx: MsgContext, text: str, expr: str, pvname: str) -> int:
        """subst over text, result stored in the PV pvname."""
        sub = parse_subst(expr)
        if sub is None:
            return -1
        new, n = sub.apply(text)
        if not n:
            return -1
        return 1 if self.server.pv.set(ctx, pvname, new) else -1

    # -- header removal ----------------------------------------------------------------------------
    def _remove_where(self, ctx: MsgContext, pred: Callable[[int, str, str], bool]) -> int:
        """Remove received headers for which pred(index among same name, name, value)."""

        def lump(m: Message, orig: Container[int]) -> None:
            seen: dict[str, int] = {}
            keep = []
            for h in m.headers:
                if id(h) in orig:
                    n = seen.get(h.key, 0)
                    seen[h.key] = n + 1
                    if pred(n, h.name, h.value):
                        continue
                keep.append(h)
            m.headers = keep
            m.forget_parsed()

        ctx.add_lump(lump)
        return 1

    @kemi()
    def remove_hf(self, ctx: MsgContext, hname: str) -> int:
        """Remove every header named hname (1 even if none)."""
        key = header_key(hname.strip())
        return self._remove_where(ctx, lambda i, n, v: header_key(n) == key)

    @kemi()
    def remove_hf_re(self, ctx: MsgContext, regex: str) -> int:
        """Remove headers whose name matches the regex (1 even if none)."""
        rx = compile_re(regex)
        if rx is None:
            return -1
        return self._remove_where(ctx, lambda i, n, v: rx.search(n) is not None)

    @kemi()
    def remove_hf_idx(self, ctx: MsgContext, hname: str, idx: int) -> int:
        """Remove the idx-th header named hname (negative counts from the end)."""
        key = header_key(hname.strip())
        count = ctx.msg.count(key)
        pos = idx if idx >= 0 else count + idx
        if not 0 <= pos < count:
            return -1
        return self._remove_where(ctx, lambda i, n, v: header_key(n) == key and i == pos)

    @kemi()
    def remove_hf_exp(self, ctx: MsgContext, match_re: str, skip_re: str) -> int:
        """Remove headers whose name matches match_re but not skip_re."""
        m, s = compile_re(match_re), compile_re(skip_re) if skip_re else None
        if m is None:
            return -1
        return self._remove_where(
            ctx, lambda i, n, v: m.search(n) is not None and not (s and s.search(n))
        )

    @kemi()
    def remove_hf_match(self, ctx: MsgContext, hname: str, op: str, value: str) -> int:
        """Remove headers hname whose body matches value by op (eq, ne, sw, in, re)."""
        key = header_key(hname.strip())
        rx = compile_re(value) if op == "re" else None
        ops: dict[str, Callable[[str], bool]] = {
            "eq": lambda x: x.lower() == value.lower(),
            "ne": lambda x: x.lower() != value.lower(),
            "sw": lambda x: x.lower().startswith(value.lower()),
            "in": lambda x: value.lower() in x.lower(),
            "re": lambda x: bool(rx and rx.search(x)),
        }
        f = ops.get(op)
        if f is None:
            return -1
        if not any(f(v) for v in ctx.msg.get_all(key)):
            return -1
        return self._remove_where(ctx, lambda i, n, v: header_key(n) == key and f(v))

    # -- replace -----------------------------------------------------------------------------------
    def _replace(self, ctx: MsgContext, regex: str, text: str, part: str, count: int) -> int:
        rx = compile_re(regex)
        if rx is None:
            return -1
        return self._subst_lump(ctx, Subst(rx, lambda m: text, count == 0), part)

    @kemi()
    def replace(self, ctx: MsgContext, regex: str, text: str) -> int:
        """Replace the first match in the message."""
        return self._replace(ctx, regex, text, "msg", 1)

    @kemi()
    def replace_all(self, ctx: MsgContext, regex: str, text: str) -> int:
        """Replace every match in the message."""
        return self._replace(ctx, regex, text, "msg", 0)

    @kemi()
    def replace_body(self, ctx: MsgContext, regex: str, text: str) -> int:
        """Replace the first match in the body."""
        return self._replace(ctx, regex, text, "body", 1)

    @kemi()
    def replace_body_all(self, ctx: MsgContext, regex: str, text: str) -> int:
        """Replace every match in the body."""
        return self._replace(ctx, regex, text, "body", 0)

    @kemi()
    def replace_body_atonce(self, ctx: MsgContext, regex: str, text: str) -> int:
        """Replace every match in the body in one pass."""
        return self._replace(ctx, regex, text, "body", 0)

    @kemi()
    def replace_hdrs(self, ctx: MsgContext, regex: str, text: str) -> int:
        """Replace the first match in the headers."""
        return self._replace(ctx, regex, text, "hdrs", 1)

    def _replace_str(self, ctx: MsgContext, match: str, repl: str, flags: str, part: str) -> int:
        if not match:
            return -1
        rx = re.compile(re.escape(match), re.I if "i" in flags else 0)
        return self._subst_lump(ctx, Subst(rx, lambda m: repl, "f" not in flags), part)

    @kemi()
    def replace_str(self, ctx: MsgContext, match: str, repl: str, flags: str) -> int:
        """Plain-string replace in the message (flags: f first, a all, i ignore case)."""
        return self._replace_str(ctx, match, repl, flags, "msg")

    @kemi()
    def replace_body_str(self, ctx: MsgContext, match: str, repl: str, flags: str) -> int:
        """Plain-string replace in the body."""
        return self._replace_str(ctx, match, repl, flags, "body")

    @kemi()
    def replace_hdrs_str(self, ctx: MsgContext, match: str, repl: str, flags: str) -> int:
        """Plain-string replace in the headers."""
        return self._replace_str(ctx, match, repl, flags, "hdrs")

    # -- privacy ---------------------------------------------------------------------------------------
    @kemi()
    def is_privacy(self, ctx: MsgContext, value: str) -> int:
        """1 if the Privacy header lists value (none, id, header, session, user, critical)."""
        items = [x.strip().lower() for v in ctx.msg.get_all("privacy") for x in v.split(";")]
        return 1 if value.strip().lower() in items else -1


MODULE = Textops
