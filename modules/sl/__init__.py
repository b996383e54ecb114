"""sl: stateless replies."""

from __future__ import annotations

from collections.abc import Container
from typing import TYPE_CHECKING

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.kemi.registry import kemi
from ksr.sip.builders import default_reason
from ksr.sip.message import Message, Response

if TYPE_CHECKING:
    from .api import SlApi


class SlParams(ModParams):
    default_code: int = 500
    default_reason: str = "Internal Server Error"
    bind_tm: int = 1
    event_callback_fl_ack: str = ""
    event_callback_lres_sent: str = ""


class Sl(Module):
    name = "sl"
    Params = SlParams

    def api(self) -> SlApi:
        from .api import SlApi

        return SlApi(self)

    def init(self) -> None:
        self.c_1xx = self.server.stats.counter("sl", "1xx_replies", doc="1xx replies sent by sl")
        self.c_2xx = self.server.stats.counter("sl", "2xx_replies", doc="2xx replies sent by sl")
        self.c_3xx = self.server.stats.counter("sl", "3xx_replies", doc="3xx replies sent by sl")
        self.c_4xx = self.server.stats.counter("sl", "4xx_replies", doc="4xx replies sent by sl")
        self.c_5xx = self.server.stats.counter("sl", "5xx_replies", doc="5xx replies sent by sl")
        self.c_6xx = self.server.stats.counter("sl", "6xx_replies", doc="6xx replies sent by sl")
        self.c_failures = self.server.stats.counter(
            "sl", "failures", doc="sl replies that could not be sent"
        )
        self._by_class = [self.c_1xx, self.c_2xx, self.c_3xx, self.c_4xx, self.c_5xx, self.c_6xx]

    def _count(self, code: int) -> None:
        k = code // 100 - 1
        if 0 <= k < 6:
            self._by_class[k].inc()

    def reply(self, ctx: MsgContext, code: int, reason: str, stateful_if_possible: bool) -> int:
        if not ctx.is_request:
            return -1
        if code < 100 or code > 699:
            return -1
        if ctx.request.method == "ACK":
            return -1
        reason = reason or default_reason(code)
        if stateful_if_possible:
            ok = self.server.send_reply_any(ctx, code, reason)
        else:
            ok = self.server.send_reply_stateless(ctx, code, reason)
        if not ok:
            self.c_failures.inc()
            return -1
        self._count(code)
        cb = self.params.event_callback_lres_sent
        if cb:
            self.server.run_event(cb, "sl:local-response", ctx)
        return 1

    @kemi()
    def sl_send_reply(self, ctx: MsgContext, code: int, reason: str) -> int:
        """sl_send_reply(code, reason): stateless reply; 3xx lists the destination set as Contacts."""
        return self.reply(ctx, code, reason, False)

    @kemi()
    def send_reply(self, ctx: MsgContext, code: int, reason: str) -> int:
        """send_reply(code, reason): stateful if a transaction exists, else stateless."""
        return self.reply(ctx, code, reason, True)

    @kemi()
    def send_reply_mode(self, ctx: MsgContext, code: int, reason: str, mode: int) -> int:
        """send_reply_mode(code, reason, mode): mode 1 = no new connection, 2 = close after."""
        if mode & 1:
            ctx.reply_no_connect = True
        if mode & 2:
            ctx.reply_close = True
        return self.reply(ctx, code, reason, True)

    def _error_reply(self, ctx: MsgContext) -> tuple[int, str]:
        if ctx.last_error is not None:
            return ctx.last_error
        return int(self.params.default_code), str(self.params.default_reason)

    @kemi()
    def sl_reply_error(self, ctx: MsgContext) -> int:
        """Stateless reply describing the last internal error."""
        code, reason = self._error_reply(ctx)
        return self.reply(ctx, code, reason, False)

    @kemi()
    def send_reply_error(self, ctx: MsgContext) -> int:
        """Like sl_reply_error, stateful if a transaction exists."""
        code, reason = self._error_reply(ctx)
        return self.reply(ctx, code, reason, True)

    @kemi()
    def sl_forward_reply(self, ctx: MsgContext, code: str, reason: str) -> int:
        """sl_forward_reply(code, reason): forward the current reply statelessly, optionally
        changing its code (same class) and reason."""
        if ctx.is_request:
            return -1
        rpl = ctx.reply
        if code:
            if not code.isdigit() or int(code) // 100 != rpl.status // 100:
                return -1
            new_code = int(code)

            def lump(m: Message, orig: Container[int]) -> None:
                if isinstance(m, Response):  # always: the lump is on a reply
                    m.status = new_code
                    if reason:
                        m.reason = reason

            ctx.add_lump(lump)
        return 1 if self.server.forward_reply_stateless(ctx) else -1


MODULE = Sl
