"""The I/O shell around the transaction machines: tables, timers, sending, local replies.

Machines (``ksr.sip.transaction``) decide; this file carries out their actions on the server:
``server.send`` for bytes, ``server.timers`` for timers, and the TU side (reply
selection, failure routes) in ``replies.py``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ksr.core.context import Destination, MsgContext
from ksr.sip.builders import BRANCH_COOKIE, make_to_tag, reply_message
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.message import Header, Request, Response
from ksr.sip.transaction import (
    DELIVER,
    ICT,
    IST,
    NICT,
    NIST,
    RETRANSMIT_TIMERS,
    SEND,
    SEND_ACK,
    START,
    STOP,
    TERMINATED,
    WAIT_TIMERS,
    Machine,
    TimerConfig,
    send_event,
)

from .api import CallbackList, TmCb, TmEvent, request_of
from .txn import Transaction, UacBranch, build_ack, build_cancel, loop_hash

if TYPE_CHECKING:
    from ksr.core.core_api import Core
    from ksr.core.timers import TimerHandle, TimerService

log: Final = logging.getLogger("ksr.tm")

# client machine states after the final reply arrived (a branch that timed out is still
# waiting for one: after its CANCEL, the callee's 487 is ACKed from its request)
_ANSWERED: Final = frozenset({"completed", "accepted", "terminated"})


class TmEngine:
    """All transactions of one worker and the machinery that drives them."""

    def __init__(self, server: Core, params: Any) -> None:
        self.server = server
        self.timers: TimerService = server.timers  # read per timer started: no lookup chain
        self.params = params
        self.by_key: dict[Any, Transaction] = {}  # server transactions
        self.by_branch: dict[tuple[str, str], UacBranch] = {}  # client transactions (bid, method)
        self.by_e2e: dict[tuple[str, str, int], Transaction] = {}  # INVITEs, for 2xx ACKs
        self.callbacks = CallbackList()  # for every transaction
        # for every transaction of one method (dialog follows INVITEs only: no event is made
        # for the others)
        self.method_callbacks: dict[str, CallbackList] = {}
        self.salt = os.urandom(3).hex()
        self._next_id = 0
        self._timer_configs: dict[tuple[float, float], TimerConfig] = {}
        self._default_tc: TimerConfig | None = None
        # the module parameters every transaction reads, in seconds, read once here (params is
        # an interpreted object: each read was a generic attribute lookup and a division)
        self.fr_default: float = params.fr_timer / 1000.0
        self.fr_inv_default: float = params.fr_inv_timer / 1000.0
        self.life_inv: float = params.max_inv_lifetime / 1000.0
        self.life_noninv: float = params.max_noninv_lifetime / 1000.0
        self.on_branch_final: Callable[[UacBranch, MsgContext | None], None] | None = (
            None  # replies.py
        )
        # timer callbacks bound once (a bound method made per timer is one more object per timer)
        self.fire_uas: Callable[[Transaction, str], None] = self.uas_timer
        self.fire_uac: Callable[[UacBranch, str], None] = self.uac_timer
        self.fire_life: Callable[[Transaction], None] = self._lifetime
        # The lifetime guard of each server transaction, without a timer per transaction (two
        # more objects each, kept for minutes): per delay class, transactions in creation order
        # (so in deadline order) with their deadline, swept once a second.
        self._lives: dict[float, dict[int, Transaction]] = {}  # their deadline: tx.expires
        self._sweeper: Any = None
        st = server.stats
        self.c_uas = st.counter("tmx", "UAS_transactions", doc="server transactions created")
        self.c_uac = st.counter("tmx", "UAC_transactions", doc="client transactions created")
        self.c_class = [
            st.counter("tmx", f"{k}xx_transactions", doc=f"transactions answered {k}xx")
            for k in range(1, 7)
        ]
        self.c_rpl_received = st.counter(
            "tmx", "rpl_received", doc="replies received by transactions"
        )
        self.c_rpl_relayed = st.counter("tmx", "relayed_replies", doc="replies relayed upstream")
        self.c_rpl_local = st.counter("tmx", "local_replies", doc="replies made here (t_reply)")
        self.c_rpl_sent = st.counter("tmx", "rpl_sent", doc="replies sent by transactions")
        self.c_active = 0
        st.gauge(
            "tmx",
            "inuse_transactions",
            lambda: len(self.by_key) + self._local_count(),
            "transactions in memory",
        )
        st.gauge(
            "tmx",
            "active_transactions",
            lambda: self.c_active,
            "transactions without a final reply yet",
        )

    def _local_count(self) -> int:
        return sum(1 for b in self.by_branch.values() if b.tx.machine is None and b.idx == 0)

    # -- timers ----------------------------------------------------------------------------
    def timer_config(self, fr: float, fr_inv: float) -> TimerConfig:
        key = (fr, fr_inv)
        tc = self._timer_configs.get(key)
        if tc is None:
            p = self.params
            wt = p.wt_timer / 1000.0
            tc = TimerConfig(
                t1=p.retr_timer1 / 1000.0,
                t2=p.retr_timer2 / 1000.0,
                t4=5.0,
                b=fr,
                c=fr_inv,
                f=fr,
                d=wt,
                j=wt,
                l=wt,
                m=wt,
                i=min(5.0, wt),
                k=min(5.0, wt),
            )
            if len(self._timer_configs) < 256:
                self._timer_configs[key] = tc
        return tc

    def start_timer(
        self,
        handles: dict[str, TimerHandle],
        name: str,
        delay: float,
        fire: Callable[..., object],
        args: tuple[Any, ...],
    ) -> None:
        self.start_timer_from(self.timers.now(), handles, name, delay, fire, args)

    def start_timer_from(
        self,
        now: float,
        handles: dict[str, TimerHandle],
        name: str,
        delay: float,
        fire: Callable[..., object],
        args: tuple[Any, ...],
    ) -> None:
        """``start_timer`` with the time read once for the timers of one batch of actions."""
        old = handles.get(name)
        if old is not None:
            old.cancel()
        # fire(*args), not a closure: a closure costs several more objects per timer, and the
        # collector walks every one of them while the transaction waits (seconds). Only the
        # retransmission timers need to be exact: the others share the timer task's wake-ups,
        # queued behind the earlier ones of their delay (the same few delays for every call:
        # no sift up the heap), and the wait timers, which only free the transaction, on whole
        # seconds with the lifetime sweeper's wake-up (up to a second late)
        if name in RETRANSMIT_TIMERS:
            handles[name] = self.timers.start_from(now, delay, False, fire, args)
        else:
            handles[name] = self.timers.start_queued(now, delay, name in WAIT_TIMERS, fire, args)

    # -- transactions ------------------------------------------------------------------------
    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def create_server_tx(self, ctx: MsgContext, key: Any) -> Transaction:
        req = request_of(ctx)
        tx = Transaction(self.new_id(), key, req)
        tx.ruri = ctx.ruri or req.uri
        # without a transaction yet (newtran), engine_for answers the newest script version
        tx.engine = self.server.engine if ctx.tx is None else self.server.engine_for(ctx)
        tx.src_ip, tx.src_port, tx.proto = ctx.src_ip, ctx.src_port, ctx.proto
        tx.arrived = ctx.timestamp
        tx.socket, tx.conn_id = ctx.socket, ctx.conn_id
        try:
            tx.reply_dest = self.server.reply_destination(req, ctx.proto)
        except RemoteProtocolError:
            tx.reply_dest = Destination(ctx.proto, ctx.src_ip, ctx.src_port)
        tx.reply_dest.proto = ctx.proto  # the transport it came on, whatever its Via claims
        p = ctx.extra.get("tm_fr")
        if p:  # t_set_fr: its values in milliseconds, 0 keeps the module's
            tx.fr = p[0] / 1000.0 if p[0] else self.fr_default
            tx.fr_inv = p[1] / 1000.0 if p[1] else self.fr_inv_default
            tx.timer_config = self.timer_config(tx.fr, tx.fr_inv)
        else:
            tx.fr, tx.fr_inv = self.fr_default, self.fr_inv_default
            tc = self._default_tc  # the module's: no lookup by a tuple of two floats
            if tc is None:
                tc = self._default_tc = self.timer_config(tx.fr, tx.fr_inv)
            tx.timer_config = tc
        tx.machine = Machine(IST if tx.is_invite else NIST, ctx.proto != "udp", tx.timer_config)
        tx.flags = ctx.flags
        self.by_key[key] = tx
        if tx.is_invite:
            try:
                tx.e2e_key = (req.call_id, req.from_.tag or "", req.cseq.number)
                self.by_e2e[tx.e2e_key] = tx
            except RemoteProtocolError:
                pass
        ctx.tx = tx
        self.c_uas.inc()
        self.c_active += 1
        pending = ctx.extra.pop("tm_tx_callbacks", None)
        if pending:
            for kind, fn in pending:
                self.tx_callback(tx, kind, fn)
        if self.wants(tx, TmCb.REQUEST_IN):
            self.run_callbacks(tx, TmEvent(TmCb.REQUEST_IN, ctx=ctx))
        # Without a final reply within its lifetime the transaction is dropped (never leaks).
        if tx.is_invite:
            life = self.life_inv if self.life_inv > tx.fr_inv else tx.fr_inv
        else:
            life = self.life_noninv if self.life_noninv > tx.fr else tx.fr
        self._guard(tx, life + 1.0)
        return tx

    def _guard(self, tx: Transaction, delay: float) -> None:
        lives = self._lives.get(delay)
        if lives is None:
            if len(self._lives) >= 16:  # many t_set_fr values: a timer each, as before
                self.start_timer(tx.handles, "life", delay, self.fire_life, (tx,))
                return
            lives = self._lives[delay] = {}
        if self._sweeper is None:
            self._sweeper = self.timers.every(
                1.0, self._sweep_lives, name="tm lifetimes", aligned=True
            )
        tx.expires = self.timers.now() + delay
        lives[tx.id] = tx

    def _sweep_lives(self) -> None:
        """Transactions past their lifetime (at most a second late: it is a leak guard)."""
        now = self.timers.now()
        for lives in self._lives.values():
            due = []
            for tx in lives.values():
                if tx.expires > now:
                    break
                due.append(tx)
            for tx in due:
                lives.pop(tx.id, None)
                self.fire_life(tx)

    def _lifetime(self, tx: Transaction) -> None:
        if tx.ended:
            return
        if tx.status < 200 and tx.machine is not None and not tx.pending_branches():
            log.debug("transaction %d ended without a final reply", tx.id)
        self.destroy(tx)

    def tx_callback(self, tx: Transaction, kind: str, fn: Any) -> None:
        if tx.callbacks is None:
            tx.callbacks = CallbackList()
        tx.callbacks.add(kind, fn)

    def wants(self, tx: Transaction, kind: str) -> bool:
        """Whether a callback listens for ``kind`` on ``tx`` (else no event is made)."""
        if kind in self.callbacks.by_kind:
            return True
        of_method = self.method_callbacks.get(tx.method)
        if of_method is not None and kind in of_method.by_kind:
            return True
        return tx.callbacks is not None and kind in tx.callbacks.by_kind

    def run_callbacks(self, tx: Transaction, ev: TmEvent) -> None:
        """Those of every transaction, then those of its method, then its own."""
        if self.callbacks:
            self.callbacks.run(ev.kind, tx, ev)
        of_method = self.method_callbacks.get(tx.method)
        if of_method is not None:
            of_method.run(ev.kind, tx, ev)
        if tx.callbacks:
            tx.callbacks.run(ev.kind, tx, ev)

    def destroy(self, tx: Transaction) -> None:
        if tx.ended:
            return
        tx.ended = True
        self.c_active -= 1
        for lives in self._lives.values():
            if lives.pop(tx.id, None) is not None:
                break
        for h in tx.handles.values():
            h.cancel()
        tx.handles.clear()
        if self.by_key.get(tx.key) is tx:
            del self.by_key[tx.key]
        if tx.e2e_key is not None and self.by_e2e.get(tx.e2e_key) is tx:
            del self.by_e2e[tx.e2e_key]
        for b in tx.branches:
            self.drop_branch(b)
            if b.cancel is not None:
                self.drop_branch(b.cancel)
        if self.wants(tx, TmCb.DESTROYED):
            self.run_callbacks(tx, TmEvent(TmCb.DESTROYED))
        # Break the reference cycles (branch -> transaction; Record-Route lump -> request
        # context -> transaction) so reference counting frees the transaction now: cyclic
        # garbage waits for the collector's full passes, which walk every live object.
        tx.branches = []
        tx.lumps = ()
        tx.extra.pop("req_extra", None)

    def drop_branch(self, b: UacBranch) -> None:
        b.deferred = ""
        for h in b.handles.values():
            h.cancel()
        b.handles.clear()
        if b.method:
            key = (b.bid, b.method)
            if self.by_branch.get(key) is b:
                del self.by_branch[key]

    def _maybe_done(self, tx: Transaction) -> None:
        """Free the transaction once every machine it owns has terminated."""
        if tx.ended:
            return
        if tx.machine is not None and not tx.machine.done:
            return
        for b in tx.branches:
            if b.machine is not None and not b.machine.done:
                return
            if b.cancel is not None and b.cancel.machine is not None and not b.cancel.machine.done:
                return
        self.destroy(tx)

    # -- server side: replies upstream ---------------------------------------------------------
    def uas_actions(self, tx: Transaction, actions: tuple[tuple[str, str], ...]) -> None:
        m = tx.machine
        assert m is not None
        now = 0.0
        timed = False  # the clock is read once for the timers started together (G and H)
        for op, arg in actions:
            if op == SEND:
                if tx.last_reply and tx.reply_dest is not None:
                    self.server.send(tx.reply_dest, tx.last_reply, tx.socket, tx.conn_id)
            elif op == START:
                if not timed:
                    now, timed = self.timers.now(), True
                self.start_timer_from(
                    now, tx.handles, arg, m.interval(arg), self.fire_uas, (tx, arg)
                )
            elif op == STOP:
                handles = tx.handles
                h = handles.get(arg)  # get and del: compiled, pop with a default is a method call
                if h is not None:
                    del handles[arg]
                    h.cancel()
            elif op == TERMINATED:
                self._maybe_done(tx)

    def uas_timer(self, tx: Transaction, name: str) -> None:
        tx.handles.pop(name, None)
        if tx.machine is not None and not tx.ended:
            self.uas_actions(tx, tx.machine.handle("timer_" + name))

    def send_upstream(
        self, tx: Transaction, rpl: Response, local: bool, rctx: MsgContext | None = None
    ) -> bool:
        """Send a reply to the caller through the server machine (stored for retransmission);
        ``rctx``: the context of the reply as received, when it is one being relayed."""
        m = tx.machine
        if m is None or tx.ended:
            return False
        code = rpl.status
        if code >= 200 and tx.status >= 200 and not (code < 300 and tx.is_invite):
            return False  # one final reply only (2xx to INVITE excepted, RFC 3261 §16.7 step 5)
        data = rpl.to_bytes()
        actions = m.handle(send_event(code))
        if not actions:
            return False
        tx.last_reply = data
        tx.reply_sent = rpl
        if code >= 200 and tx.status < 200:
            tx.status, tx.reason = code, rpl.reason
            k = code // 100 - 1
            if 0 <= k < 6:
                self.c_class[k].inc()
            if tx.arrived:
                self.server.latency.request_done(tx.method, tx.arrived)
        self.c_rpl_sent.inc()
        (self.c_rpl_local if local else self.c_rpl_relayed).inc()
        self.uas_actions(tx, actions)
        if self.wants(tx, TmCb.RESPONSE_OUT):
            self.run_callbacks(
                tx, TmEvent(TmCb.RESPONSE_OUT, ctx=rctx, code=code, reply=rpl, local=local)
            )
        if code >= 200 and not tx.ended and not tx.pending_branches():
            self._slim(tx, local)
        return True

    @staticmethod
    def _slim(tx: Transaction, local: bool) -> None:
        """The final reply is out and no branch waits for one: let go of what only routing
        needed. The transaction still lives for its wait time (retransmissions are answered
        from bytes), and the garbage collector walks every object it keeps until then: the
        parsed final replies and the request's lumps are about a quarter of a call's."""
        for b in tx.branches:
            b.reply = None
            if b.machine is not None and b.machine.state in _ANSWERED:
                b.request = None  # what comes later is answered from bytes (its ACK is built)
        tx.reply_sent = None
        tx.lumps = ()
        tx.extra.pop("req_extra", None)
        if not local:
            # a relayed reply: the request's route is over. What was parsed from the request
            # (Via, From, To, URIs...) is parsed again if anyone asks; until then the
            # collector need not walk it for the wait time
            tx.request.forget_parsed()

    def local_reply(
        self, tx: Transaction, code: int, reason: str, ctx: MsgContext | None = None
    ) -> bool:
        """t_reply: a reply made here to the transaction's request."""
        if not tx.to_tag and code > 100:  # a 100 carries no To-tag (RFC 3261 §8.2.6.2)
            tx.to_tag = make_to_tag(tx.request, self.salt)
        body, ctype = (ctx.reply_body or (b"", None)) if ctx is not None else (b"", None)
        contacts: list[str] | None = None
        if 300 <= code < 400 and ctx is not None and ctx.branches:
            contacts = [ctx.ruri or ""] + [b.uri for b in ctx.branches]
        try:
            # the Response (events and reply_sent carry it) with its bytes made in the same
            # pass: send_upstream serialises nothing
            rpl = reply_message(
                tx.request,
                code,
                reason,
                tx.to_tag,
                ctx.reply_lumps if ctx is not None else [],
                body,
                ctype,
                self.server.server_header(),
                contacts,
            )
        except RemoteProtocolError:
            return False
        ok = self.send_upstream(tx, rpl, True)
        if ok and ctx is not None:
            ctx.replied = code
        if ok and code >= 200:
            self.cancel_branches(tx, None)
        return ok

    # -- client side: branches ---------------------------------------------------------------
    def start_branch(self, b: UacBranch, req: Request, reliable: bool) -> bool:
        tx = b.tx
        b.request = req
        b.method = req.method
        b.data = req.to_bytes()
        invite = req.method == "INVITE"
        b.machine = Machine(
            ICT if invite else NICT,
            reliable,
            tx.timer_config or self.timer_config(tx.fr, tx.fr_inv),
        )
        self.by_branch[(b.bid, req.method)] = b
        if not self.uac_actions(b, b.machine.handle("start")):
            return False
        return True

    def branch_id(self, tx: Transaction, idx: int) -> str:
        """Our Via branch for branch ``idx`` of ``tx`` (the loop hash, RFC 3261 §16.6 step 8).
        Joined: compiled, an f-string with numbers in it is a str.format call per field, and
        each ``+`` a new string."""
        h = tx.loop_hash
        if not h:  # the first branch: every branch of the transaction shares it
            h = tx.loop_hash = loop_hash(tx.request, tx.request.uri)
        return "".join((BRANCH_COOKIE, h, ".", self.salt, hex(tx.id)[2:], ".", str(idx)))

    def failover(self, b: UacBranch) -> UacBranch | None:
        """DNS failover (core ``use_dns_failover``): ``b`` failed at the transport level; send
        the same request, with a new Via branch, to the next destination its next hop resolved
        to. A destination that cannot be sent to is skipped. The new branch, or None when
        failover is off or no destination is left."""
        tx = b.tx
        if not self.server.config.core.use_dns_failover or tx.disable_failover:
            return None
        while b.alt and b.request is not None and b.sock is not None:
            dest, rest = b.alt[0], b.alt[1:]
            b.alt = ()
            idx = len(tx.branches)
            bid = self.branch_id(tx, idx)
            sent = b.request
            via = Header(sent.headers[0].name, sent.headers[0].value.replace(b.bid, bid, 1))
            req = Request(sent.method, sent.uri, [via, *sent.headers[1:]], sent.body, sent.version)
            nb = UacBranch(tx, idx, b.uri, b.dst_uri)
            nb.bid, nb.dest, nb.sock, nb.flags, nb.alt = bid, dest, b.sock, b.flags, rest
            tx.branches.append(nb)
            log.info(
                "branch %d of transaction %d failed; DNS failover to %s:%s:%d",
                b.idx,
                tx.id,
                dest.proto,
                dest.host,
                dest.port,
            )
            if self.start_branch(nb, req, dest.proto != "udp"):
                self.server.core_stats.fwd_requests.inc()
                return nb
            log.warning("sending to %s:%s:%d failed", dest.proto, dest.host, dest.port)
            nb.status, nb.local, nb.reason = 503, True, "Service Unavailable"
            self.drop_branch(nb)
            if nb.machine is not None:
                nb.machine.state = "terminated"
            b = nb
        return None

    def uac_actions(self, b: UacBranch, actions: tuple[tuple[str, str], ...]) -> bool:
        m = b.machine
        assert m is not None
        ok = True
        now = 0.0
        timed = False  # the clock is read once for the timers started together (A and B...)
        resend = 0.0  # the delay of the retransmission timer (A, E) started with them
        for op, arg in actions:
            if op == SEND:
                if b.dest is None or not self.server.send(b.dest, b.data, b.sock):
                    ok = False
            elif op == SEND_ACK:
                if b.ack_data and b.dest is not None:
                    self.server.send(b.dest, b.ack_data, b.sock)
            elif op == START:
                if not timed:
                    now, timed = self.timers.now(), True
                delay = m.interval(arg)
                if arg == "A" or arg == "E":
                    resend = delay
                elif (arg == "B" or arg == "F") and 0.0 < resend < delay:
                    # Timer B (F) started with Timer A (E), due later: started only if A (E)
                    # fires, with the deadline it has now (deferred_at + its delay). A reply
                    # stops both first in nearly every transaction: no timer is made for it
                    b.deferred, b.deferred_at = arg, now
                    continue
                self.start_timer_from(now, b.handles, arg, delay, self.fire_uac, (b, arg))
            elif op == STOP:
                if b.deferred == arg:
                    b.deferred = ""
                    continue
                handles = b.handles
                h = handles.get(arg)
                if h is not None:
                    del handles[arg]
                    h.cancel()
            elif op == DELIVER and arg == "timeout":
                self.branch_timeout(b)
            elif op == TERMINATED:
                self.drop_branch(b)
                self._maybe_done(b.tx)
        return ok

    def uac_timer(self, b: UacBranch, name: str) -> None:
        b.handles.pop(name, None)
        m = b.machine
        if m is None or b.tx.ended:
            return
        later = b.deferred
        if later:  # Timer A (E) fired: the Timer B (F) deferred with it starts now
            b.deferred = ""
            self.start_timer_from(
                b.deferred_at, b.handles, later, m.interval(later), self.fire_uac, (b, later)
            )
        self.uac_actions(b, m.handle("timer_" + name))

    def branch_timeout(self, b: UacBranch) -> None:
        """No (final) reply in time: the branch ends with a 408 made up here."""
        if b.method == "CANCEL":
            return
        if not b.pending:
            return
        if b.replied and b.method == "INVITE":
            self.send_cancel(b)
        b.timed_out = True
        b.local = True
        b.status = 408
        if self.on_branch_final is not None:
            self.on_branch_final(b, None)

    def ack_for(self, b: UacBranch, rpl: Response) -> None:
        if b.request is not None and not b.ack_data:
            try:
                b.ack_data = build_ack(b.request, rpl).to_bytes()
            except RemoteProtocolError:
                pass

    # -- CANCEL ------------------------------------------------------------------------------
    def send_cancel(self, b: UacBranch, reason: str | None = None) -> None:
        """CANCEL a pending INVITE branch (only after a provisional reply, RFC 3261 §9.1)."""
        if (
            b.cancel is not None
            or b.request is None
            or b.request.method != "INVITE"
            or not b.pending
        ):
            return
        if not b.replied:
            b.cancel_pending = True
            return
        c = UacBranch(b.tx, b.idx, b.uri, b.dst_uri)
        c.bid, c.dest, c.sock = b.bid, b.dest, b.sock
        b.cancel = c
        self.start_branch(
            c, build_cancel(b.request, reason), b.machine.reliable if b.machine else False
        )

    def cancel_branches(
        self, tx: Transaction, skip: UacBranch | None, reason: str | None = None
    ) -> int:
        n = 0
        for b in tx.branches:
            if b is not skip and b.pending:
                self.send_cancel(b, reason)
                n += 1
        return n

    # -- local requests (t_uac) ----------------------------------------------------------------
    def send_request(
        self,
        req: Request,
        dest: Destination,
        sock: Any,
        callback: Callable[[int, Response | None], None] | None,
    ) -> Transaction | None:
        tx = Transaction(self.new_id(), None, req)
        tx.fr = self.params.fr_timer / 1000.0
        tx.fr_inv = self.params.fr_inv_timer / 1000.0
        tx.timer_config = self.timer_config(tx.fr, tx.fr_inv)
        tx.local_cb = callback
        b = UacBranch(tx, 0, req.uri, None)
        b.dest, b.sock = dest, sock
        via = req.top_via
        b.bid = via.branch or ""
        tx.branches.append(b)
        self.c_uac.inc()
        self.c_active += 1
        if not self.start_branch(b, req, dest.proto != "udp"):
            self.destroy(tx)
            return None
        return tx
