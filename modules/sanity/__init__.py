"""sanity: RFC 3261 checks on incoming requests, answered with the precise error reply."""

from __future__ import annotations

import logging

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.kemi.registry import kemi
from ksr.modules.sl.api import SlApi
from ksr.sip.message import parse_header_text

from .checks import (
    DEFAULT_CHECKS,
    DEFAULT_URI_CHECKS,
    FAILURE_KEY,
    Checker,
    Failure,
)

log = logging.getLogger("ksr.sanity")

_FAILURE_KEY = FAILURE_KEY


class SanityParams(ModParams):
    default_checks: int = DEFAULT_CHECKS
    uri_checks: int = DEFAULT_URI_CHECKS
    proxy_require: str = ""  # option tags this proxy supports ("foo, bar")
    autodrop: int = 1  # accepted for config compatibility; KEMI calls always return -1
    noreply: int = 0  # 1: do not reply, the script calls sanity_reply() or replies itself


class Sanity(Module):
    name = "sanity"
    Params = SanityParams
    depends = ("sl",)

    def init(self) -> None:
        self.sl = self.optional("sl", SlApi)
        self.supported = frozenset(
            t.strip() for t in self.params.proxy_require.split(",") if t.strip()
        )
        self.c_failed = self.server.stats.counter(
            "sanity", "failed_checks", doc="requests that failed a sanity check"
        )
        # what KSR.sanity.sanity_check's binding calls (compiled; sanity_check the reference)
        self.checker = Checker(self.supported, self._failed)

    def _reply(self, ctx: MsgContext, failure: Failure) -> bool:
        if not ctx.is_request or ctx.request.method == "ACK" or not failure.code:
            return False  # code 0: Kamailio fails these checks without a reply
        ctx.reply_lumps.extend(parse_header_text("\r\n".join(failure.headers)))
        sl = self.sl
        if sl is not None:
            return bool(sl.reply(ctx, failure.code, failure.reason, False) > 0)
        return self.server.send_reply_stateless(ctx, failure.code, failure.reason)

    @kemi(via=lambda sanity: sanity.checker)
    def sanity_check(self, ctx: MsgContext, msg_checks: int, uri_checks: int) -> int:
        """sanity_check(msg_checks, uri_checks): -1 if a check failed (Kamailio's error reply is
        already sent unless noreply=1 or the check fails silently), 1 if all passed. Bits as
        Kamailio's; 1048576 = ksr strict."""
        return self.checker(ctx, msg_checks, uri_checks)  # the compiled checks (checks.py)

    def _failed(self, ctx: MsgContext, failure: Failure) -> int:
        """A failed check of sanity_check (and of its compiled Checker): counted, logged,
        noted for sanity_reply and answered unless noreply; -1."""
        self.c_failed.inc()
        log.debug(
            "sanity check failed for message from %s:%d: %d %s",
            ctx.src_ip,
            ctx.src_port,
            failure.code,
            failure.reason,
        )
        ctx.extra[_FAILURE_KEY] = failure
        if not self.params.noreply:
            self._reply(ctx, failure)
        return -1

    @kemi()
    def sanity_check_defaults(self, ctx: MsgContext) -> int:
        """sanity_check with the default_checks and uri_checks parameters."""
        return self.sanity_check(ctx, self.params.default_checks, self.params.uri_checks)

    @kemi()
    def sanity_reply(self, ctx: MsgContext) -> int:
        """Send the reply for the last failed check of this message (with noreply=1); without
        a failed check 500 "Server Sanity Failure", as Kamailio. 1, or -1 if sending failed."""
        if not self.params.noreply or not ctx.is_request or ctx.request.method == "ACK":
            return 1  # the check already replied / nothing to answer
        failure = ctx.extra.get(_FAILURE_KEY)
        if failure is None:
            failure = Failure(500, "Server Sanity Failure")
        elif not failure.code:
            return 1  # a check that fails without a reply
        return 1 if self._reply(ctx, failure) else -1


MODULE = Sanity
