"""acc: call detail records (one per tracked call), Kamailio's transaction accounting (acc and
missed_calls records driven by message flags, txacc.py) and per-request accounting records.

CDRs come from the dialog module's events. Either the script asks for them from its dialog
event callback (``KSR.acc.acc_cdr(evname)``, what the default scripts do), or ``cdr_enable=1``
writes them automatically after the callback (Kamailio's way). A call never gets two CDRs: the
first of the two writes it. Records go through a durable queue (spool.py). See docs/cdr.md.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.rpc import rpc
from ksr.kemi.registry import kemi
from ksr.modules.dialog.api import Dialog, DialogApi
from ksr.modules.rr.api import RrApi
from ksr.modules.tm.api import TmApi

from .cdr import build_cdr, eval_extras, parse_extra
from .spool import DurableQueue
from .txacc import (
    REQUEST,
    AccFlags,
    TxAccounting,
    core_record,
    flag_on,
    log_line,
    parse_comment,
    parse_failed_filter,
)
from .writers import make_writer

if TYPE_CHECKING:
    from .api import AccApi

log = logging.getLogger("ksr.acc")

RECENT = 50  # last CDRs kept in memory (status page)


class AccParams(ModParams):
    cdr_enable: int = 0  # 1: write a CDR automatically when each tracked call ends
    cdr_on_failed: int = 1  # automatic CDRs for failed calls too
    cdr_extra: str = ""  # "name=$pv;name2=$dlg_var(x)"
    cdr_table: str = "acc_cdrs"
    db_url: str = "jsonl://ksr-cdrs.jsonl"  # jsonl://, sqlite://, postgres://
    db_table_acc: str = "acc"
    db_table_missed_calls: str = "missed_calls"
    # Kamailio's transaction accounting (message flag numbers; -1 = off)
    log_flag: int = -1
    log_missed_flag: int = -1
    failed_transaction_flag: int = -1
    db_flag: int = -1
    db_missed_flag: int = -1
    log_extra: str = ""  # "name=$pv;..." added to acc log lines
    db_extra: str = ""  # "name=$pv;..." added to acc/missed_calls rows (columns of that name)
    early_media: int = 0  # 1: account a 1xx with a body too
    report_ack: int = 0  # 1: account the ACK of an accounted 2xx
    report_cancels: int = 0  # 1: account CANCEL transactions too
    detect_direction: int = 0  # 1: swap from/to tags of requests sent by the callee (rr ftag)
    failed_filter: str = ""  # "404,407": failed transactions with these codes not accounted
    log_facility: str = "LOG_DAEMON"
    cdr_spool_file: str = ""  # default: next to a file backend, else ./ksr-acc-spool.jsonl
    cdr_spool_after: float = 10.0  # seconds of backend outage before the queue goes to disk
    cdr_queue_max: int = 10000  # records kept in memory before spooling regardless


class Acc(Module):
    name = "acc"
    Params = AccParams

    def api(self) -> AccApi:
        from .api import AccApi

        return AccApi(self)

    def init(self) -> None:
        p: AccParams = self.params
        self.extra = parse_extra(p.cdr_extra)
        self.log_extra = parse_extra(p.log_extra)
        self.db_extra = parse_extra(p.db_extra)
        base = Path(self.server.config.source).parent if self.server.config.source else None
        self.writer = make_writer(p.db_url, p.cdr_table, [n for n, _ in self.extra], base)
        self.queue = DurableQueue(
            self.writer, self._spool_path(base), p.cdr_spool_after, p.cdr_queue_max
        )
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)  # the status page shows them
        self.c_cdrs = self.server.stats.counter("acc", "cdrs", doc="CDRs written")
        self.c_reqs = self.server.stats.counter(
            "acc", "requests", doc="per-request accounting records"
        )
        self.flags = AccFlags(
            p.log_flag, p.log_missed_flag, p.failed_transaction_flag, p.db_flag, p.db_missed_flag
        )
        self.dialog = self.optional("dialog", DialogApi)
        tm = self.optional("tm", TmApi)
        if self.flags.configured and tm is not None:  # nothing per transaction otherwise
            TxAccounting(
                self.server,
                self.flags,
                self._emit,
                self._now,
                early_media=bool(p.early_media),
                report_ack=bool(p.report_ack),
                report_cancels=bool(p.report_cancels),
                detect_direction=bool(p.detect_direction),
                failed_filter=parse_failed_filter(p.failed_filter),
                rr=self.optional("rr", RrApi),
            ).bind(tm)

    def _spool_path(self, base: Path | None) -> Path:
        p: AccParams = self.params
        if p.cdr_spool_file:
            path = Path(p.cdr_spool_file)
        else:
            scheme, _, rest = p.db_url.partition("://")
            if scheme in ("jsonl", "sqlite") and rest and rest != ":memory:":
                path = Path(rest.split("?", 1)[0] + ".spool")
            else:
                path = Path("ksr-acc-spool.jsonl")
        if not path.is_absolute() and base is not None:
            path = base / path
        return path

    async def start(self, nursery: trio.Nursery) -> None:
        dialog = self.dialog
        if dialog is not None:  # here, not in init: every module's init has run by now
            dialog.add_listener(self._on_dialog_event)
        await nursery.start(self.queue.run)

    def stop(self) -> None:
        n = self.queue.spool_memory()
        if n:
            log.warning(
                "acc: %d unwritten records kept in %s for the next start", n, self.queue.spool_path
            )
        self.writer.close()

    # -- CDRs --------------------------------------------------------------------------------
    def write_cdr(self, dlg: Dialog, ctx: MsgContext) -> bool:
        """Queue the CDR of a call that ended; False if it already has one."""
        if self.dialog is None or not self.dialog.claim_cdr(dlg):
            return False
        cdr = build_cdr(dlg, eval_extras(ctx, self.extra))
        self.queue.submit("", cdr)
        self.recent.append(cdr)
        self.c_cdrs.inc()
        return True

    def _on_dialog_event(self, dlg: Dialog, evname: str, ctx: MsgContext) -> None:
        p: AccParams = self.params
        if not p.cdr_enable:
            return
        if evname == "dialog:end" or (evname == "dialog:failed" and p.cdr_on_failed):
            self.write_cdr(dlg, ctx)

    def _dialog_of(self, ctx: MsgContext) -> Dialog | None:
        return self.dialog.current(ctx) if self.dialog is not None else None

    @kemi()
    def acc_cdr(self, ctx: MsgContext, evname: str) -> int:
        """Write the CDR of the current call from the dialog event callback: for dialog:end and
        dialog:failed 1 (written) or 2 (the call already had its CDR); -1 otherwise."""
        if evname not in ("dialog:end", "dialog:failed"):
            return -1
        dlg = self._dialog_of(ctx)
        if dlg is None or not dlg.end_ts:
            return -1
        return 1 if self.write_cdr(dlg, ctx) else 2

    # -- Kamailio's accounting records ---------------------------------------------------------
    def _now(self) -> float:
        if self.dialog is not None:
            return self.dialog.now()
        import time

        return time.time()

    def _emit(self, kind: str, text: str, ctx: MsgContext, rec: dict[str, Any]) -> None:
        """A record of transaction accounting: "acc" or "missed", to the log and/or the table
        as the transaction's flags say."""
        flags = rec.pop("_flags", ctx.flags)
        f = self.flags
        log_flag, db_flag = (f.log, f.db) if kind == "acc" else (f.log_missed, f.db_missed)
        p: AccParams = self.params
        if flag_on(flags, log_flag):
            self._log(text, ctx, rec)
        if flag_on(flags, db_flag):
            table = p.db_table_acc if kind == "acc" else p.db_table_missed_calls
            self._store(table, ctx, rec)

    def _log(self, text: str, ctx: MsgContext, rec: dict[str, Any]) -> None:
        extras = eval_extras(ctx, self.log_extra)
        log.info("%s", log_line(text, {**rec, **extras}, [n for n, _ in self.log_extra]))
        self.c_reqs.inc()

    def _store(self, table: str, ctx: MsgContext, rec: dict[str, Any]) -> None:
        row = dict(rec)
        for name, value in eval_extras(ctx, self.db_extra).items():
            row.setdefault(name, "" if value is None else str(value))
        self.queue.submit(table, row)
        self.c_reqs.inc()

    def _request_record(self, ctx: MsgContext, comment: str) -> dict[str, Any]:
        code, reason = parse_comment(comment)
        tx = ctx.tx
        return core_record(ctx.request, getattr(tx, "to_tag", "") or "", code, reason, self._now())

    @kemi()
    def acc_log_request(self, ctx: MsgContext, comment: str) -> int:
        """Log Kamailio's accounting line for the current request; ``comment`` is "code reason"
        ("200 OK"): ``ACC: request accounted: timestamp=...;method=...;...`` plus ``log_extra``."""
        if not ctx.is_request:
            return -1
        self._log(REQUEST, ctx, self._request_record(ctx, comment))
        return 1

    @kemi()
    def acc_db_request(self, ctx: MsgContext, comment: str, table: str) -> int:
        """Store Kamailio's accounting row of the current request in ``table`` of db_url
        (method, from_tag, to_tag, callid, sip_code, sip_reason, time plus ``db_extra``)."""
        if not ctx.is_request:
            return -1
        p: AccParams = self.params
        self._store(table or p.db_table_acc, ctx, self._request_record(ctx, comment))
        return 1

    @kemi()
    def acc_request(self, ctx: MsgContext, comment: str, table: str) -> int:
        """Account the current request to every backend (the log and db_url)."""
        if self.acc_log_request(ctx, comment) < 0:
            return -1
        return self.acc_db_request(ctx, comment, table)

    @rpc("acc.queue")
    def rpc_queue(self) -> dict[str, Any]:
        """The record queue: written so far, waiting in memory, spooled on disk, backend state."""
        return {
            "backend": self.writer.describe(),
            "written": self.queue.written,
            "queued": len(self.queue.queue),
            "spooled": self.queue.spooled_count(),
            "backend_down": self.queue.down_since is not None,
        }


MODULE = Acc
