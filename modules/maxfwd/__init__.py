"""maxfwd: Max-Forwards processing (RFC 3261 §16.6 step 3)."""

from __future__ import annotations

import logging

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.kemi.registry import Route, kemi
from ksr.sip.abnf import uint
from ksr.sip.message import Header, Message

from .process import PLAIN, Processor

log = logging.getLogger("ksr.maxfwd")

_PLAIN = PLAIN


class MaxfwdParams(ModParams):
    max_limit: int = 70  # a received value above this is lowered to it when decremented


class Maxfwd(Module):
    name = "maxfwd"
    Params = MaxfwdParams

    def init(self) -> None:
        # what KSR.maxfwd.process_maxfwd's binding calls (compiled; the method the reference)
        self.processor = Processor(self.params.max_limit)

    def _value(self, msg: Message) -> tuple[Header | None, int]:
        """The first Max-Forwards header and its value; value -1 when absent, -2 when
        malformed or above 255 (Kamailio's bound)."""
        h = msg.first("max-forwards")  # compiled: a loop here runs as interpreted code
        if h is None:
            return None, -1
        v = _PLAIN.get(h.value)
        if v is None:
            v = uint(h.value, 255)
        return h, (-2 if v is None else v)

    @kemi(routes=Route.REQUEST, via=lambda maxfwd: maxfwd.processor)
    def process_maxfwd(self, ctx: MsgContext, limit: int) -> int:
        """process_maxfwd(limit): 2 if Max-Forwards was missing (added with ``limit``), 1 if
        decremented, -1 if it is already 0 (answer 483), -2 on a malformed value (or one
        above 255). The change is applied when the request is forwarded."""
        return self.processor(ctx, limit)  # the compiled work (process.py)

    @kemi()
    def is_maxfwd_lt(self, ctx: MsgContext, limit: int) -> int:
        """is_maxfwd_lt(n): 1 if Max-Forwards < n, -1 if not, -2 if missing, -3 if malformed."""
        if not ctx.is_request:
            return -3
        _, val = self._value(ctx.msg)
        if val == -1:
            return -2
        if val == -2:
            return -3
        return 1 if val < limit else -1


MODULE = Maxfwd
