"""The dialog engine: creates dialogs, feeds them the SIP traffic, runs timers and events.

Every state change goes through ``apply``: it asks the sans-IO machine for the next state, and
only when that machine emits an event does ``apply`` run the script callback and the listeners
(acc). So a call's end is reported exactly once whatever path ends it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ksr.core.context import MsgContext, SocketInfo
from ksr.core.ratelog import RateLimitedLog
from ksr.core.timers import TimerService
from ksr.modules.tm.api import TmApi, request_of
from ksr.sip.dialog_state import DlgEvent, DlgInput, DlgState, next_step, reply_input
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import split_commas
from ksr.sip.message import Request, Response

from .clock import WallClock
from .cluster import DROPPED
from .model import Dialog, Leg
from .profiles import Profiles
from .requests import first_contact, record_routes, split_route_set
from .table import DialogTable, split_names

if TYPE_CHECKING:
    from ksr.core.core_api import Core

    from . import DialogParams
    from .cluster import SharedDialogs
    from .store import DialogStore

log: Final = logging.getLogger("ksr.dialog")

Listener = Callable[[Dialog, str, MsgContext], None]
LINGER: Final = (
    32.0  # seconds an ended dialog is kept to match (absorbs retransmitted BYEs quietly)
)
UNLISTED: Final = 4  # Dialog.iflags bit: ended and its ending transaction is over: not in dlg.list
UNLIST: Final = (
    "dlg_unlist"  # ctx.extra / tx.extra key: the dialog a BYE ended (unlisted with its tx)
)

# end reasons (CDR end_reason)
CALLER_BYE: Final = "caller-bye"
CALLEE_BYE: Final = "callee-bye"
TIMEOUT: Final = "timeout"
RPC: Final = "rpc"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"


class DialogManager:
    def __init__(self, server: Core, params: DialogParams) -> None:
        self.server = server
        self.params = params
        # the parameters read per call or event as native fields (the parameters are an
        # interpreted model, ~600 instructions a read from here; nothing changes them after
        # start-up)
        self.event_callback: str = params.event_callback
        self.default_timeout: int = params.default_timeout
        self.early_timeout: int = params.early_timeout
        self.noack_timeout: int = params.noack_timeout
        self.bye_on_timeout: int = params.send_bye
        self.timeout_noreset: bool = bool(params.timeout_noreset)
        self.dlg_flag: int = params.dlg_flag
        self.detect_spirals: bool = bool(params.detect_spirals)
        self.timers: TimerService = server.timers  # read per timer started: no lookup chain
        # bound once: read from the interpreted server per 2xx otherwise
        self.is_myself_text: Callable[[str], bool] = server.is_myself_text
        self.has_callback: Callable[[str, MsgContext | None], bool] = server.has_callback
        # the text of the socket the last dialog came in on (create)
        self._sock_of: SocketInfo | None = None
        self._sock_text = ""
        self.clock = WallClock(server.timers.now)
        self.table = DialogTable(params.hash_size, server.config.core.server_id)
        self.profiles = Profiles(
            split_names(params.profiles_no_value), split_names(params.profiles_with_value)
        )
        self.listeners: list[Listener] = []
        self.bad_input = RateLimitedLog(log)  # lines that what peers send can cause
        self.store: DialogStore | None = None
        # dialogs shared with the other nodes (enable_dmq; cluster.py)
        self.cluster: SharedDialogs | None = None
        self.send_bye: Callable[[Dialog, bool], bool] = lambda dlg, to_callee: False
        self.on_created: Callable[[Dialog, MsgContext], None] = lambda dlg, ctx: None
        self.tm: TmApi | None = None  # set when tm is loaded (tmglue.py)
        # bound once: a bound method made per timer is one more object each (a dialog's last
        # timer is kept LINGER seconds after it ends)
        self._fire: Callable[[Dialog], None] = self._on_timer
        st = server.stats
        self.c_processed = st.counter("dialog", "processed_dialogs", doc="dialogs tracked")
        self.c_expired = st.counter(
            "dialog", "expired_dialogs", doc="dialogs ended by their timeout"
        )
        self.c_failed = st.counter("dialog", "failed_dialogs", doc="dialogs that failed (no 2xx)")
        st.gauge(
            "dialog",
            "active_dialogs",
            lambda: self.count(DlgState.CONFIRMED_NA, DlgState.CONFIRMED),
            "dialogs answered and not ended (calls in progress)",
        )
        st.gauge(
            "dialog",
            "early_dialogs",
            lambda: self.count(DlgState.EARLY),
            "dialogs ringing (provisional reply, not answered yet)",
        )

    def count(self, *states: DlgState) -> int:
        c = self.table.count_states()
        return sum(c[s] for s in states)

    # -- creation ---------------------------------------------------------------------------
    def create(self, ctx: MsgContext) -> Dialog:
        """A dialog for the initial INVITE being routed."""
        req = request_of(ctx)
        callid = req.call_id
        h_entry, h_id = self.table.new_key(callid)
        t = self._trio_time()
        now = self.clock.at(t) if t is not None else time.time()
        extra = ctx.extra
        dctx: dict[str, Any] | None = extra.get("dlg_ctx")
        if dctx is None:  # nothing set before dlg_manage (the usual): no int()/bool()/str()
            lifetime = self.default_timeout
            timeout_bye = bool(self.bye_on_timeout)
            timeout_route = ""
            sflags = 0
        else:
            lifetime = int(dctx.get("timeout") or self.default_timeout)
            timeout_bye = bool(dctx.get("timeout_bye", self.bye_on_timeout))
            timeout_route = str(dctx.get("timeout_route") or "")
            sflags = int(dctx.get("flags") or 0)
        s = ctx.socket
        if s is not self._sock_of or not self._sock_text:
            # the text of the last socket kept (a SocketInfo is frozen; calls come in on few)
            self._sock_text = f"{s.proto}:{s.ip}:{s.port}"
            self._sock_of = s
        sock = self._sock_text
        dlg = Dialog(
            h_entry=h_entry,
            h_id=h_id,
            callid=callid,
            from_uri=req.from_.uri_text,
            to_uri=req.to.uri_text,
            req_uri=ctx.ruri or req.uri,
            src_ip=ctx.src_ip,
            src_port=ctx.src_port,
            init_ts=now,
            lifetime=lifetime,
            timeout_bye=timeout_bye,
            timeout_noreset=self.timeout_noreset,
            timeout_route=timeout_route,
            sflags=sflags,
            caller=Leg(
                tag=req.from_tag or "",
                contact=first_contact(req),
                cseq=str(req.cseq.number),
                socket=sock,
                addr=f"{ctx.proto}:{ctx.src_ip}:{ctx.src_port}",
            ),
            callee=Leg(socket=sock),
        )
        # set before dlg_manage (rare): a look first, no pop with a default (a method call)
        if "dlg_vars_pending" in extra:
            dlg.variables.update(extra.pop("dlg_vars_pending"))
        if "dlg_profiles_pending" in extra:
            for name, value in extra.pop("dlg_profiles_pending"):
                self.profiles.add(dlg, name, value)
        self.table.add(dlg)
        self.c_processed.inc()
        extra["dlg"] = dlg
        self._arm(dlg, self.early_timeout, t)
        self.persist(dlg)
        self.on_created(dlg, ctx)
        return dlg

    def manage(self, ctx: MsgContext) -> int:
        """KSR.dialog.dlg_manage: track the call of this initial INVITE, or bind an in-dialog
        request to its dialog; 1 on success, -1 otherwise. Here, compiled, rather than in the
        module's interpreted class (one INVITE per call)."""
        req = ctx.msg
        if not isinstance(req, Request):
            return -1
        extra = ctx.extra
        if isinstance(extra.get("dlg"), Dialog):
            return 1
        try:
            ttag = req.to_tag
        except Exception:
            return -1
        if ttag:
            self.on_request(ctx)
            return 1 if self.current(ctx) is not None else -1
        if req.method != "INVITE":
            return -1
        if self.detect_spirals:
            spiral = self.find_spiral(ctx)
            if spiral is not None:
                extra["dlg"] = spiral
                extra["dlg_spiral"] = True
                return 1
        try:
            self.create(ctx)
        except Exception as err:
            log.warning("dialog: cannot track this INVITE: %s", err)
            return -1
        return 1

    def discard(self, dlg: Dialog) -> None:
        """Forget a dialog that never became a call (no transaction): no event."""
        t = dlg.timer
        if t is not None:
            dlg.timer = None
            t.cancel()
        if dlg.profiles:  # the profiles' module is interpreted: no frame when there are none
            self.profiles.release(dlg)
        self.table.remove(dlg)
        dlg.state = DlgState.DELETED
        self.persist(dlg)

    def find_spiral(self, ctx: MsgContext) -> Dialog | None:
        """An INVITE we already routed once coming back to us (a spiral): same Call-ID and From
        tag as a dialog still being set up, with one of our own Vias below the top."""
        req = request_of(ctx)
        try:
            cands = self.table.by_callid.get(req.call_id)
            if not cands:  # a new call (nearly always): no Via to read
                return None
            vias = req.vias[1:]
            ftag = req.from_tag or ""
        except Exception:
            return None
        if not any(self.server.is_myself_via(v.host, v.port) for v in vias):
            return None
        for d in cands:
            if d.caller.tag == ftag and d.state in (DlgState.UNCONFIRMED, DlgState.EARLY):
                return d
        return None

    # -- matching ----------------------------------------------------------------------------
    def match(self, ctx: MsgContext) -> tuple[Dialog, bool] | None:
        """The dialog of an in-dialog request or of a reply, and its direction (True =
        downstream, caller to callee)."""
        m = ctx.msg
        try:
            callid = m.call_id
            ftag = m.from_tag or ""
            ttag = m.to_tag
        except Exception:
            return None
        if isinstance(m, Response):
            found = self.table.find(callid, ftag, None)
            return (found[0], False) if found else None
        return self.table.find(callid, ftag, ttag)

    def current(self, ctx: MsgContext) -> Dialog | None:
        dlg = ctx.extra.get("dlg")
        if isinstance(dlg, Dialog):
            return dlg
        found = self.match(ctx) if (not ctx.msg.is_request or ctx.msg.to_tag) else None
        if found is None:
            return None
        ctx.extra["dlg"] = found[0]
        return found[0]

    # -- traffic -----------------------------------------------------------------------------
    def request_hook(self, ctx: MsgContext) -> bool:
        """The core's request hook (every request, before the script): ``on_request``, its
        errors logged, never consuming the request. Here, compiled, rather than in the module's
        interpreted class: one frame less per request."""
        try:
            self.on_request(ctx)
        except RemoteProtocolError as err:
            # a request too broken to match a dialog (no Call-ID, a bad From): sanity in the
            # script answers it; one line here, rate-limited, no traceback
            self.bad_input.info(
                "dialog: cannot match a %s from %s:%d to a dialog: %s",
                ctx.method,
                ctx.src_ip,
                ctx.src_port,
                err.reason,
            )
        except Exception:
            log.exception("dialog: in-dialog request handling failed")
        return False

    def on_request(self, ctx: MsgContext) -> None:
        """Every request, before the script: in-dialog requests (ACK, BYE, re-INVITE...) and
        CANCELs drive their dialog. Never creates a dialog."""
        req = ctx.msg
        if not isinstance(req, Request) or ctx.extra.get("dlg_seen"):
            return
        ctx.extra["dlg_seen"] = True
        try:
            method = req.method
            ttag = req.to_tag
        except Exception:
            return
        if method == "CANCEL":
            found = self.table.find(req.call_id, req.from_tag or "", None)
            if found and found[0].state in (DlgState.UNCONFIRMED, DlgState.EARLY):
                found[0].cancelled = True
                ctx.extra["dlg"] = found[0]
            return
        if not ttag:
            return
        found = self.table.find(req.call_id, req.from_tag or "", ttag)
        if found is None and self.cluster is not None and self.cluster.lookup(req.call_id):
            found = self.table.find(req.call_id, req.from_tag or "", ttag)
        if found is None:
            return
        dlg, downstream = found
        ctx.extra["dlg"] = dlg
        ctx.extra["dlg_dir"] = 1 if downstream else 2
        leg = dlg.caller if downstream else dlg.callee
        try:
            if method != "ACK":
                leg.cseq = str(req.cseq.number)
        except Exception:
            pass
        if method == "ACK":
            self.apply(dlg, DlgInput.ACK, ctx)
        elif method == "BYE":
            self.apply(dlg, DlgInput.BYE, ctx, CALLER_BYE if downstream else CALLEE_BYE)
            if dlg.state is DlgState.DELETED and not dlg.iflags & UNLISTED:
                self._unlist_after(dlg, ctx)
        elif dlg.state in (DlgState.CONFIRMED, DlgState.CONFIRMED_NA) and not dlg.timeout_noreset:
            dlg.timeout_ts = self.clock.now() + dlg.lifetime
            self._arm(dlg, dlg.lifetime)
            self.persist(dlg)

    def listed(self) -> list[Dialog]:
        """The dialogs dlg.list shows: an ended one only until its BYE transaction is over
        (Kamailio's view); the table keeps it LINGER seconds longer to absorb late BYEs."""
        return [d for d in self.table if not d.iflags & UNLISTED]

    def _unlist_after(self, dlg: Dialog, ctx: MsgContext) -> None:
        """Leave dlg.list when the transaction of the BYE that ended the dialog is freed
        (straight away without tm): the BYE's transaction takes the dialog when it is created
        (tmglue.py), without a callback object per BYE kept for the wait time."""
        if self.tm is None:
            dlg.iflags |= UNLISTED
            return
        ctx.extra[UNLIST] = dlg

    def on_reply(self, dlg: Dialog, status: int, ctx: MsgContext | None) -> None:
        """A reply to the dialog's initial INVITE, received or generated by ksr."""
        inp = reply_input(status)
        if inp is None:
            return
        rpl = ctx.msg if ctx is not None and isinstance(ctx.msg, Response) else None
        if rpl is not None and dlg.state in (DlgState.UNCONFIRMED, DlgState.EARLY):
            ttag = rpl.to_tag
            if ttag and (inp is DlgInput.ANSWERED or not dlg.callee.tag):
                dlg.callee.tag = ttag
                dlg.callee.contact = first_contact(rpl) or dlg.callee.contact
                if ctx is not None:
                    dlg.callee.addr = f"{ctx.proto}:{ctx.src_ip}:{ctx.src_port}"
            if inp is DlgInput.ANSWERED:
                self._learn_routes(dlg, rpl)
        if inp is DlgInput.FAILED or inp is DlgInput.ANSWERED:
            if dlg.state in (DlgState.UNCONFIRMED, DlgState.EARLY):
                dlg.status = status
        reason = CANCELLED if (inp is DlgInput.FAILED and dlg.cancelled) else FAILED
        self.apply(dlg, inp, ctx, reason)

    def _learn_routes(self, dlg: Dialog, rpl: Response) -> None:
        to_caller, to_callee = split_route_set(record_routes(rpl), self.is_myself_text)
        # most calls have none beyond ksr's own entry: no list made for nothing
        dlg.caller.route_set = (
            ",".join([x for v in to_caller for x in split_commas(v)]) if to_caller else ""
        )
        dlg.callee.route_set = (
            ",".join([x for v in to_callee for x in split_commas(v)]) if to_callee else ""
        )

    # -- ending ------------------------------------------------------------------------------
    def terminate(self, dlg: Dialog, reason: str, bye: bool, ctx: MsgContext | None = None) -> bool:
        """End a dialog from ksr's side (RPC, script, timeout): BYE both sides if asked."""
        if dlg.state is DlgState.DELETED or dlg.iflags & DROPPED:
            return False
        if self.cluster is not None and not self.cluster.claim(dlg):
            self.drop(dlg)
            return False
        if bye and dlg.state in (DlgState.CONFIRMED, DlgState.CONFIRMED_NA):
            self.send_bye(dlg, True)
            self.send_bye(dlg, False)
        inp = DlgInput.TIMEOUT if reason == TIMEOUT else DlgInput.TERMINATE
        self.apply(dlg, inp, ctx, reason)
        return True

    def _on_timer(self, dlg: Dialog) -> None:
        dlg.timer = None
        if dlg.iflags & DROPPED:
            return
        if dlg.state is DlgState.DELETED:
            self.table.remove(dlg)
            return
        if self.cluster is not None and not self.cluster.recheck(dlg):
            return
        if dlg.state in (DlgState.CONFIRMED, DlgState.CONFIRMED_NA):
            remaining = self.clock.delay_until(dlg.timeout_ts)
            if remaining > 0.5:  # the lifetime was extended meanwhile
                self._arm(dlg, remaining)
                return
        if dlg.timeout_route and self.event_callback:
            self._run_event(dlg, "dialog:timeout", None)
            if dlg.state is DlgState.DELETED:
                return
        self.c_expired.inc()
        self.terminate(dlg, TIMEOUT, bye=dlg.timeout_bye)

    def apply(
        self, dlg: Dialog, inp: DlgInput, ctx: MsgContext | None, reason: str = ""
    ) -> DlgEvent | None:
        old = dlg.state
        step = next_step(old, inp)
        if step.state is old or dlg.iflags & DROPPED:
            return None
        if (
            step.state is DlgState.DELETED
            and self.cluster is not None
            and not self.cluster.claim(dlg)
        ):
            self.drop(dlg)  # another node ended it (and wrote its CDR)
            return None
        dlg.state = step.state
        if step.state is DlgState.CONFIRMED_NA:
            # the clock read once, for the time kept and the timer (a read calls trio's clock)
            t = self._trio_time()
            now = self.clock.at(t) if t is not None else time.time()
            dlg.start_ts = now
            dlg.timeout_ts = now + dlg.lifetime
            self._arm(dlg, min(dlg.lifetime, self.noack_timeout), t)
        elif step.state is DlgState.CONFIRMED:
            # the timer armed when the 2xx came (no-ACK, never later than timeout_ts) stays:
            # at its time _on_timer finds the call confirmed and waits the rest; a timer
            # started and cancelled less per call
            if dlg.timer is None:
                self._arm(dlg, self.clock.delay_until(dlg.timeout_ts))
        elif step.state is DlgState.DELETED:
            t = self._trio_time()
            dlg.end_ts = self.clock.at(t) if t is not None else time.time()
            dlg.end_reason = reason or dlg.end_reason
            if step.event is DlgEvent.FAILED:
                self.c_failed.inc()
                if not dlg.status:
                    dlg.status = 487 if dlg.cancelled else 408 if reason == TIMEOUT else 500
            if dlg.profiles:
                self.profiles.release(dlg)
            # it only lets go of the ended dialog: on whole seconds with tm's wait timers,
            # queued behind the others (TimerService.start_queued, up to a second late)
            self._arm(dlg, LINGER, t, True)
        self.persist(dlg)
        if step.event is not None:
            # the plain name: an Enum's ``value`` is an interpreted property (~1.8k instructions)
            evname = str(step.event)
            self._run_event(dlg, evname, ctx)
            for fn in self.listeners:
                try:
                    fn(dlg, evname, self._event_ctx(dlg, ctx))
                except Exception:
                    log.exception(
                        "dialog listener failed on %s of %s", step.event.value, dlg.callid
                    )
        return step.event

    # -- events ------------------------------------------------------------------------------
    def _event_ctx(self, dlg: Dialog, ctx: MsgContext | None) -> MsgContext:
        """A context for the event: the message that caused it, else a faked one; the dialog is
        the current one, so $dlg(...) and $dlg_var(...) read it."""
        if ctx is None:
            ev = self.server.faked_context()
        else:
            ev = MsgContext(self.server, ctx.msg, ctx.src_ip, ctx.src_port, ctx.socket, ctx.conn_id)
            ev.tx = ctx.tx
        ev.extra["dlg"] = dlg
        return ev

    def _run_event(self, dlg: Dialog, evname: str, ctx: MsgContext | None) -> None:
        cb = self.event_callback
        if not cb:
            return
        # ksr's default callback may be undefined: then no event context is made for nothing
        if self.has_callback(cb, ctx):
            self.server.run_event(cb, evname, self._event_ctx(dlg, ctx))
        if ctx is not None:
            ctx.extra.setdefault("dlg", dlg)

    # -- timers and storage ------------------------------------------------------------------
    def _trio_time(self) -> float | None:
        """trio's current time; None outside a trio run (offline tools)."""
        try:
            return self.timers.now()
        except RuntimeError:
            return None

    def _arm(self, dlg: Dialog, delay: float, t: float | None = None, lax: bool = False) -> None:
        """(Re)start the dialog's timer, ``delay`` seconds from trio time ``t`` (None: from
        now, read here); ``lax``: a timer that only frees memory (``start_queued``)."""
        old = dlg.timer
        if old is not None:
            dlg.timer = None
            old.cancel()
        try:
            if t is None:
                t = self.timers.now()
            # callback and argument, not a closure: two objects fewer per live dialog
            # coarse: a dialog's timeouts share the timer task's wake-ups (at most 1/16 s late)
            if lax:
                dlg.timer = self.timers.start_queued(t, delay, True, self._fire, (dlg,))
            else:
                dlg.timer = self.timers.start_from(t, max(0.0, delay), True, self._fire, (dlg,))
        except RuntimeError:  # no trio run (offline tools): nothing can expire anyway
            pass

    def set_timeout(self, dlg: Dialog, seconds: int) -> None:
        dlg.lifetime = seconds
        if dlg.state in (DlgState.CONFIRMED, DlgState.CONFIRMED_NA):
            dlg.timeout_ts = self.clock.now() + seconds
            self._arm(dlg, seconds)
        self.persist(dlg)

    def drop(self, dlg: Dialog) -> None:
        """Let go of a dialog another node holds or ended: no event, nothing stored."""
        dlg.iflags |= DROPPED
        t = dlg.timer
        if t is not None:
            dlg.timer = None
            t.cancel()
        if self.table.by_key.get(dlg.key) is dlg:
            if dlg.state is not DlgState.DELETED:
                if dlg.profiles:
                    self.profiles.release(dlg)
            self.table.remove(dlg)
        if self.store is not None:
            self.store.dirty.pop(f"{dlg.h_entry}:{dlg.h_id}", None)

    def persist(self, dlg: Dialog) -> None:
        if self.store is not None and not dlg.iflags & DROPPED:
            self.store.changed(dlg)

    def restore(self, dialogs: list[Dialog]) -> int:
        """Put dialogs loaded from storage back to work; their timers resume where they were."""
        n = 0
        for dlg in dialogs:
            if dlg.state is DlgState.DELETED or dlg.key in self.table.by_key:
                continue
            self.table.add(dlg)
            self.profiles.relink(dlg)
            if dlg.state in (DlgState.CONFIRMED, DlgState.CONFIRMED_NA):
                self._arm(dlg, self.clock.delay_until(dlg.timeout_ts))
            else:
                self._arm(dlg, self.clock.delay_until(dlg.init_ts + self.early_timeout))
            n += 1
        return n
