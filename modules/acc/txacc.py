"""Kamailio's transaction accounting: which replies of which transactions are accounted, and
what an accounting record holds.

A request whose message flags include ``log_flag``/``db_flag`` (accounting) or
``log_missed_flag``/``db_missed_flag`` (missed calls) when its transaction is created gets
watched. Its final reply sent upstream is then accounted as Kamailio does it:

- an INVITE answered >= 300 with a missed-call flag set: a "call missed" record (log and/or the
  ``missed_calls`` table); the missed-call flags are then cleared, so serial forking reports a
  missed call once (on the first failed attempt, as Kamailio does);
- 2xx (and 1xx with a body when ``early_media`` is on) with an accounting flag: a "transaction
  answered" record (log and/or the ``acc`` table);
- >= 300 only when ``failed_transaction_flag`` is set too (minus ``failed_filter`` codes);
- the ACK of a 2xx with ``report_ack``; CANCELs only with ``report_cancels``.

Decisions are pure functions of flags and codes (tested without a network); ``TxAccounting``
binds them to tm's callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ksr.core.context import MsgContext
from ksr.modules.rr.api import RrApi
from ksr.modules.tm.api import TmApi, TmCb
from ksr.sip.errors import SipProtocolError as SipError

if TYPE_CHECKING:
    from ksr.sip.message import Request, Response

log = logging.getLogger("ksr.acc")

# Kamailio's log texts (acc.h) and its names of the core attributes in a log line.
ANSWERED = "ACC: transaction answered: "
MISSED = "ACC: call missed: "
ACKED = "ACC: request acknowledged: "
REQUEST = "ACC: request accounted: "
LOG_NAMES = (
    ("method", "method"),
    ("from_tag", "from_tag"),
    ("to_tag", "to_tag"),
    ("call_id", "callid"),
    ("code", "sip_code"),
    ("reason", "sip_reason"),
)
CORE_COLUMNS = ("method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time")


def flag_on(flags: int, flag: int) -> bool:
    return 0 <= flag < 32 and bool(flags & (1 << flag))


@dataclass(frozen=True, slots=True)
class AccFlags:
    """The flag numbers of the acc parameters (-1: not used)."""

    log: int = -1
    log_missed: int = -1
    failed: int = -1
    db: int = -1
    db_missed: int = -1

    @property
    def configured(self) -> bool:
        return max(self.log, self.log_missed, self.db, self.db_missed) >= 0

    def acc_on(self, flags: int) -> bool:
        return flag_on(flags, self.log) or flag_on(flags, self.db)

    def missed_on(self, flags: int) -> bool:
        return flag_on(flags, self.log_missed) or flag_on(flags, self.db_missed)


def should_account_reply(
    f: AccFlags, flags: int, code: int, early_media: bool, has_body: bool, failed_filter: set[int]
) -> bool:
    """Kamailio's should_acc_reply: is this reply sent upstream accounted?"""
    if code >= 300:
        return flag_on(flags, f.failed) and code not in failed_filter
    if not f.acc_on(flags):
        return False
    return code >= 200 or (early_media and has_body)


def parse_failed_filter(text: str) -> set[int]:
    """``"404,407"`` -> {404, 407} (codes whose failed transactions are not accounted)."""
    out = set()
    for part in text.replace(";", ",").split(","):
        if part.strip().isdigit():
            out.add(int(part.strip()))
    return out


def core_record(
    req: Request, to_tag: str, code: int, reason: str, now: float, upstream: bool = False
) -> dict[str, Any]:
    """The fixed part of an acc record (Kamailio's core2strar): method, tags, Call-ID, code,
    reason, time. ``upstream`` (detect_direction) swaps the tags of a request sent by the
    callee."""
    try:
        ftag = req.from_tag or ""
    except SipError:
        ftag = ""
    try:
        ttag = req.to_tag or to_tag
    except SipError:
        ttag = to_tag
    if upstream:
        ftag, ttag = ttag, ftag
    return {
        "method": req.method,
        "from_tag": ftag,
        "to_tag": ttag,
        "callid": req.get("call-id") or "",
        "sip_code": str(code) if code else "",
        "sip_reason": reason,
        "time": now,
    }


def log_line(text: str, rec: dict[str, Any], extra_names: list[str]) -> str:
    """Kamailio's acc log line: ``ACC: ...: timestamp=N;method=...;...;extra=value``."""
    parts = [f"{text}timestamp={int(rec['time'])}"]
    parts += [f"{name}={rec.get(key, '') or ''}" for name, key in LOG_NAMES]
    parts += [f"{name}={_text(rec.get(name))}" for name in extra_names]
    return ";".join(parts)


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def parse_comment(comment: str) -> tuple[int, str]:
    """KSR.acc.acc_*_request's comment ``"200 OK"`` -> (200, "OK"); no code -> (0, comment)."""
    code, _, reason = comment.strip().partition(" ")
    if code.isdigit() and len(code) == 3:
        return int(code), reason.strip()
    return 0, comment.strip()


Emit = Callable[[str, str, MsgContext, dict[str, Any]], None]  # (kind, text, ctx, core record)


class TxAccounting:
    """Binds the decisions above to tm: REQUEST_IN picks the transactions to watch, then
    RESPONSE_OUT, FAILURE and E2E_ACK produce records through ``emit(kind, text, ctx, rec)``
    with kind "acc" or "missed" (the caller writes log lines and rows)."""

    def __init__(
        self,
        server: Any,
        flags: AccFlags,
        emit: Emit,
        now: Callable[[], float],
        early_media: bool = False,
        report_ack: bool = False,
        report_cancels: bool = False,
        detect_direction: bool = False,
        failed_filter: set[int] | None = None,
        rr: RrApi | None = None,
    ) -> None:
        self.server = server
        self.rr = rr
        self.tm: TmApi | None = None
        self.f = flags
        self.emit = emit
        self.now = now
        self.early_media = early_media
        self.report_ack = report_ack
        self.report_cancels = report_cancels
        self.detect_direction = detect_direction
        self.failed_filter = failed_filter or set()

    def bind(self, tm: TmApi) -> None:
        self.tm = tm
        tm.register_callback(TmCb.REQUEST_IN, self.on_request_in)
        if self.report_cancels:  # ksr answers a CANCEL statelessly: no transaction of its own
            tm.register_callback(TmCb.E2E_CANCEL, self.on_cancel)

    # -- tm callbacks ----------------------------------------------------------------------------
    def on_request_in(self, tx: Any, ev: Any) -> None:
        ctx: MsgContext | None = ev.ctx
        if ctx is None or (tx.method == "CANCEL" and not self.report_cancels):
            return
        flags = ctx.flags
        if not (self.f.acc_on(flags) or self.f.missed_on(flags)):
            return
        tm = self.tm
        assert tm is not None
        tm.register_tx_callback(tx, TmCb.RESPONSE_OUT, self.on_response_out)
        if self.report_ack and self.f.acc_on(flags) and tx.is_invite:
            tm.register_tx_callback(tx, TmCb.E2E_ACK, self.on_ack)
        if tx.is_invite and self.f.missed_on(flags):
            tm.register_tx_callback(tx, TmCb.FAILURE, self.on_failure)
        if self.detect_direction:
            rr = self.rr
            if rr is not None and rr.is_direction(ctx, "upstream") > 0:
                tx.extra["acc_upstream"] = True

    def on_cancel(self, tx: Any, ev: Any) -> None:
        """A CANCEL (answered 200 at once) whose own flags ask for accounting."""
        ctx: MsgContext | None = ev.ctx
        if ctx is None or not self.f.acc_on(ctx.flags):
            return
        rec = core_record(ctx.request, "", 200, "canceling", self.now(), self._upstream(tx))
        self.emit("acc", ANSWERED, ctx, rec)

    def on_failure(self, tx: Any, ev: Any) -> None:
        self._missed(tx, ev.code, self._branch_reply(ev.branch))

    def on_response_out(self, tx: Any, ev: Any) -> None:
        code = ev.code
        rpl: Response | None = ev.reply
        if tx.is_invite and code >= 300 and self.f.missed_on(tx.flags):
            self._missed(tx, code, rpl)
        has_body = bool(rpl is not None and rpl.body)
        if not should_account_reply(
            self.f, tx.flags, code, self.early_media, has_body, self.failed_filter
        ):
            return
        self.emit("acc", ANSWERED, self._context(tx), self._record(tx, code, rpl))

    def on_ack(self, tx: Any, ev: Any) -> None:
        ctx: MsgContext | None = ev.ctx
        if ctx is None or not self.f.acc_on(tx.flags):
            return
        rec = core_record(
            ctx.request, tx.to_tag, tx.status, tx.reason, self.now(), self._upstream(tx)
        )
        self.emit("acc", ACKED, ctx, rec)

    # -- helpers ---------------------------------------------------------------------------------
    def _missed(self, tx: Any, code: int, rpl: Response | None) -> None:
        flags = tx.flags
        if not self.f.missed_on(flags):
            return
        self.emit("missed", MISSED, self._context(tx), self._record(tx, code, rpl, flags))
        # reported once: the first failed attempt (serial forking does not report again)
        for flag in (self.f.log_missed, self.f.db_missed):
            if flag >= 0:
                tx.flags &= ~(1 << flag)

    def _record(
        self, tx: Any, code: int, rpl: Response | None, flags: int | None = None
    ) -> dict[str, Any]:
        reason = rpl.reason if rpl is not None else (tx.reason if code == tx.status else "")
        to_tag = ""
        if rpl is not None:
            try:
                to_tag = rpl.to_tag or ""
            except SipError:
                to_tag = ""
        rec = core_record(
            tx.request, to_tag or tx.to_tag, code, reason, self.now(), self._upstream(tx)
        )
        rec["_flags"] = tx.flags if flags is None else flags
        return rec

    def _upstream(self, tx: Any) -> bool:
        return bool(tx.extra.get("acc_upstream"))

    @staticmethod
    def _branch_reply(branch: Any) -> Response | None:
        return getattr(branch, "reply", None) if branch is not None else None

    def _context(self, tx: Any) -> MsgContext:
        """The request as the extras ($fU, $rU, $si...) see it: R-URI of the winning branch."""
        ctx = MsgContext(self.server, tx.request, tx.src_ip, tx.src_port, tx.socket, tx.conn_id)
        ctx.tx = tx
        ctx.flags = tx.flags
        best = _winning_branch(tx)
        ctx.ruri = best.uri if best is not None else tx.ruri
        return ctx


def _winning_branch(tx: Any) -> Any:
    for b in tx.branches:
        if 200 <= b.status < 300:
            return b
    return tx.branches[-1] if tx.branches else None
