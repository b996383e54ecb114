"""tm: stateful SIP transactions, forking, failure routes (Kamailio's tm module)."""

from __future__ import annotations

import re
from typing import Any

from ksr.core.context import Destination, MsgContext, RouteType, SocketInfo
from ksr.core.module import ModParams, Module
from ksr.core.rpc import rpc
from ksr.core.rpc_merge import JOIN, SUM
from ksr.kemi.registry import Route, kemi
from ksr.sip.builders import new_branch
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.hostport import bracket_host, format_hostport, split_proto
from ksr.sip.message import Header, Request, parse_header_text

from .api import Callback, CallbackList, TmApi, TmCb, TmEvent, UacCallback
from .engine import TmEngine
from .pvs import register_pvs
from .relay import NO_FAILOVER, T_ON, Relayer
from .replies import ReplyProcessor
from .txn import Transaction

__all__ = ["MODULE", "TmApi", "TmCb", "TmEvent", "Transaction"]


class TmParams(ModParams):
    fr_timer: int = 30000  # ms: no reply at all (Timer B/F)
    fr_inv_timer: int = 120000  # ms: INVITE after a provisional (Timer C)
    wt_timer: int = 5000  # ms: how long a completed transaction absorbs retransmissions
    retr_timer1: int = 500  # ms: T1
    retr_timer2: int = 4000  # ms: T2
    max_inv_lifetime: int = 180000  # ms
    max_noninv_lifetime: int = 32000  # ms
    restart_fr_on_each_reply: int = 1
    auto_inv_100: int = 1
    auto_inv_100_reason: str = "Trying"
    failure_reply_mode: int = 3
    disable_6xx_block: int = 0
    event_callback: str = ""
    event_callback_lres_sent: str = ""
    contacts_avp: str = ""
    contact_flows_avp: str = ""
    unix_tx_timeout: int = 500
    aggregate_challenges: int = 1
    reparse_invite: int = 1
    e2e_cancel_reason: int = 1
    failover_on_503: int = 1  # DNS failover (core use_dns_failover) also on a 503 reply


_SET_NAMES = {"b": "on_branch", "f": "on_failure", "o": "on_reply"}


class Tm(Module):
    name = "tm"
    Params = TmParams
    depends = ("sl",)

    def init(self) -> None:
        self.engine = TmEngine(self.server, self.params)
        self.replies = ReplyProcessor(self.engine)
        self.relayer = Relayer(self.engine, self.replies)
        self.server.reply_handlers.append(self.replies.handle_reply)
        self.server.stateful = self  # the core's stateful replies and retransmission checks
        register_pvs(self.server.pv, self)

    def api(self) -> TmApi:
        return TmApi(self)

    # -- API for other modules ---------------------------------------------------------------
    def register_callback(self, kind: str, fn: Callback, method: str | None = None) -> None:
        """Call ``fn(tx, ev)`` for events of every transaction (of ``method`` only, if given)."""
        if method is None:
            self.engine.callbacks.add(kind, fn)
        else:
            self.engine.method_callbacks.setdefault(method, CallbackList()).add(kind, fn)

    def register_tx_callback(
        self, target: MsgContext | Transaction, kind: str, fn: Callback
    ) -> None:
        """Call ``fn(tx, ev)`` for events of one transaction: the given one, or the one of the
        request in ``ctx`` (remembered until t_relay/t_newtran creates it)."""
        if isinstance(target, Transaction):
            self.engine.tx_callback(target, kind, fn)
        elif target.tx is not None:
            self.engine.tx_callback(target.tx, kind, fn)
        else:
            if kind not in TmCb.ALL:
                raise ValueError(f"unknown tm callback kind {kind!r}")
            target.extra.setdefault("tm_tx_callbacks", []).append((kind, fn))

    def t_get(self, ctx: MsgContext) -> Transaction | None:
        """The transaction of the message being processed (request, reply or failure route)."""
        return ctx.tx if isinstance(ctx.tx, Transaction) else None

    def find_invite(self, call_id: str, from_tag: str, cseq: int) -> Transaction | None:
        return self.engine.by_e2e.get((call_id, from_tag, cseq))

    def send_request(
        self,
        method: str,
        ruri: str,
        headers: list[tuple[str, str]] | str = (),  # type: ignore[assignment]
        body: bytes = b"",
        next_hop: str | None = None,
        callback: UacCallback | None = None,
        socket: SocketInfo | None = None,
    ) -> Transaction | None:
        """Send a request of our own statefully (Kamailio's t_uac). Missing From, To, Call-ID,
        CSeq and Max-Forwards are made up; ``callback(code, reply)`` gets the final reply
        (408 and None on timeout). Returns the transaction, or None if it could not be sent."""
        if isinstance(headers, str):
            hdrs = [Header(h.name, h.value) for h in parse_header_text(headers)]
        else:
            hdrs = [Header(n, v) for n, v in headers]
        dest = self.server.resolve(next_hop or ruri)
        if dest is None:
            return None
        sock = (
            socket
            if socket is not None and socket.proto == dest.proto
            else self.server.socket_for(dest.proto)
        )
        if sock is None:
            return None
        req = Request(method, ruri, hdrs, body)
        host = bracket_host(sock.adv_ip)
        defaults = {
            "from": ("From", f"<sip:ksr@{host}>;tag={new_branch()[7:19]}"),
            "to": ("To", f"<{ruri}>"),
            "call-id": ("Call-ID", new_branch()[7:] + "@" + sock.adv_ip),
            "cseq": ("CSeq", f"1 {method}"),
            "max-forwards": ("Max-Forwards", "70"),
        }
        for key, (name, value) in defaults.items():
            if req.get(key) is None:
                req.headers.append(Header(name, value))
        req.remove_headers("content-length")
        req.remove_headers("via")
        req.headers.append(Header("Content-Length", str(len(body))))
        fake = MsgContext(self.server, req, sock.ip, sock.port, sock)
        req.headers.insert(0, Header("Via", self.server.make_via(fake, sock, new_branch())))
        req.raw = None
        try:
            req.cseq  # noqa: B018 - a bad CSeq must fail here, not on the reply
        except RemoteProtocolError:
            return None
        return self.engine.send_request(
            req, Destination(dest.proto, dest.host, dest.port, dest.uri), sock, callback
        )

    # -- the core asks us for stateful replies (sl.send_reply, sl_reply_error...) --------------
    def reply_if_transaction(self, ctx: MsgContext, code: int, reason: str) -> bool | None:
        tx = ctx.tx
        if not isinstance(tx, Transaction) or not ctx.is_request:
            return None
        return self.engine.local_reply(tx, code, reason, ctx)

    def has_transaction(self, req: Request) -> bool:
        """The core's overload check: is this request a retransmission of one in a transaction?"""
        return self.relayer.lookup(req) is not None

    # -- KSR.tm: relaying ---------------------------------------------------------------------
    @kemi(routes=Route.REQUEST | Route.FAILURE, via=lambda tm: tm.relayer.relay)
    def t_relay(self, ctx: MsgContext) -> int:
        """Create the transaction (if needed) and forward statefully to $du/R-URI and the
        branches; negative on failure."""
        return self.relayer.relay(ctx)

    @kemi(routes=Route.REQUEST | Route.FAILURE)
    def t_relay_to_flags(self, ctx: MsgContext, flags: int) -> int:
        """t_relay with flags: 0x01 no 100 Trying, 0x04 no DNS failover."""
        return self.relayer.relay(ctx, flags=flags)

    @kemi(routes=Route.REQUEST | Route.FAILURE)
    def t_relay_to_proxy(self, ctx: MsgContext, proxy: str) -> int:
        """t_relay_to_proxy("proto:host:port")."""
        uri, proto = _proxy_uri(proxy)
        return self.relayer.relay(ctx, uri, proto) if uri else -1

    @kemi(routes=Route.REQUEST | Route.FAILURE)
    def t_relay_to_proxy_flags(self, ctx: MsgContext, proxy: str, flags: int) -> int:
        """t_relay_to_proxy_flags(proxy, flags)."""
        uri, proto = _proxy_uri(proxy)
        return self.relayer.relay(ctx, uri, proto, flags) if uri else -1

    @kemi(routes=Route.REQUEST | Route.FAILURE)
    def t_relay_to_proto(self, ctx: MsgContext, proto: str) -> int:
        """t_relay_to_proto("UDP"|"TCP"|...)."""
        return self.relayer.relay(ctx, None, proto.lower() or None)

    @kemi(routes=Route.REQUEST | Route.FAILURE)
    def t_relay_to_proto_addr(self, ctx: MsgContext, proto: str, host: str, port: int) -> int:
        """t_relay_to_proto_addr(proto, host, port)."""
        p = proto.lower() or "udp"
        return self.relayer.relay(ctx, f"sip:{format_hostport(host, port)};transport={p}", p)

    @kemi()
    def t_replicate(self, ctx: MsgContext, uri: str) -> int:
        """t_replicate(uri): send a stateful copy of the request to uri."""
        return self.relayer.relay(ctx, uri)

    # -- KSR.tm: transactions -----------------------------------------------------------------
    @kemi(routes=Route.REQUEST, via=lambda tm: tm.relayer.newtran)
    def t_newtran(self, ctx: MsgContext) -> int:
        """Create the transaction: 1 created, 0 retransmission (absorbed), negative on error."""
        return self.relayer.newtran(ctx)

    @kemi(via=lambda tm: tm.relayer.check_trans)
    def t_check_trans(self, ctx: MsgContext) -> int:
        """0 retransmission absorbed / ACK of a negative reply, 1 found (CANCEL for a known
        INVITE, ACK of a 2xx, failure/branch route), -1 not found."""
        return self.relayer.check_trans(ctx)

    @kemi()
    def t_lookup_request(self, ctx: MsgContext) -> int:
        """1 if a transaction for this request exists."""
        return 1 if ctx.is_request and self.relayer.lookup(ctx.request) is not None else -1

    @kemi()
    def t_exists(self, ctx: MsgContext) -> int:
        """1 if the current message has a transaction."""
        return (
            1 if ctx.tx is not None or (ctx.is_request and self.relayer.lookup(ctx.request)) else -1
        )

    @kemi()
    def t_lookup_cancel(self, ctx: MsgContext) -> int:
        """1 if the INVITE this CANCEL cancels is known."""
        ok = (
            ctx.is_request
            and ctx.request.method == "CANCEL"
            and self.relayer.lookup(ctx.request, "INVITE")
        )
        return 1 if ok else -1

    @kemi()
    def t_lookup_cancel_flags(self, ctx: MsgContext, flags: int) -> int:
        """t_lookup_cancel; flags 1 copies the INVITE's flags to this message."""
        inv = self.relayer.lookup(ctx.request, "INVITE") if ctx.is_request else None
        if inv is None:
            return -1
        if flags & 1:
            ctx.flags = inv.flags
        return 1

    @kemi()
    def t_reply(self, ctx: MsgContext, code: int, reason: str) -> int:
        """t_reply(code, reason): stateful reply (the transaction must exist)."""
        tx = ctx.tx
        if not isinstance(tx, Transaction) or not 100 <= code <= 699:
            return -1
        return 1 if self.engine.local_reply(tx, code, reason, ctx) else -1

    @kemi()
    def t_send_reply(self, ctx: MsgContext, code: int, reason: str) -> int:
        """t_send_reply(code, reason): create the transaction if needed, then reply."""
        if ctx.tx is None and self.relayer.newtran(ctx) < 0:
            return -1
        return self.t_reply(ctx, code, reason)

    @kemi()
    def t_reply_error(self, ctx: MsgContext) -> int:
        """Stateful reply for the last internal error."""
        code, reason = ctx.last_error or (500, "Server Internal Error")
        return self.t_reply(ctx, code, reason)

    @kemi()
    def t_retransmit_reply(self, ctx: MsgContext) -> int:
        """Send the last reply of the transaction again."""
        tx = ctx.tx or (self.relayer.lookup(ctx.request) if ctx.is_request else None)
        if not isinstance(tx, Transaction) or not tx.last_reply or tx.reply_dest is None:
            return -1
        return 1 if self.server.send(tx.reply_dest, tx.last_reply, tx.socket, tx.conn_id) else -1

    @kemi()
    def t_release(self, ctx: MsgContext) -> int:
        """Free the transaction of this request."""
        tx = ctx.tx
        if not isinstance(tx, Transaction):
            return -1
        self.engine.destroy(tx)
        ctx.tx = None
        return 1

    @kemi()
    def t_clean(self, ctx: MsgContext) -> int:
        """Nothing to clean: transactions free themselves. Always 1."""
        return 1

    # -- KSR.tm: callbacks by name ------------------------------------------------------------
    def _set_on(self, ctx: MsgContext, attr: str, name: str) -> int:
        ctx.extra.setdefault(T_ON, {})[attr] = name
        if isinstance(ctx.tx, Transaction):
            setattr(ctx.tx, attr, name)
        return 1

    @kemi(routes=Route.REQUEST | Route.FAILURE | Route.TM_ONREPLY | Route.BRANCH)
    def t_on_failure(self, ctx: MsgContext, name: str) -> int:
        """Name the function run when all branches failed (failure route); "" resets."""
        return self._set_on(ctx, "on_failure", name)

    @kemi(routes=Route.REQUEST | Route.FAILURE | Route.TM_ONREPLY | Route.BRANCH)
    def t_on_reply(self, ctx: MsgContext, name: str) -> int:
        """Name the function run for each reply of the transaction (onreply route)."""
        return self._set_on(ctx, "on_reply", name)

    @kemi(routes=Route.REQUEST | Route.FAILURE)
    def t_on_branch(self, ctx: MsgContext, name: str) -> int:
        """Name the function run for each new outgoing branch (branch route)."""
        return self._set_on(ctx, "on_branch", name)

    @kemi()
    def t_on_branch_failure(self, ctx: MsgContext, name: str) -> int:
        """Name the function run for each branch that ends with a negative reply."""
        return self._set_on(ctx, "on_branch_failure", name)

    @kemi()
    def t_is_set(self, ctx: MsgContext, target: str) -> int:
        """t_is_set("branch_route"|"failure_route"|"onreply_route"): 1 if set, -1 if not."""
        attr = _SET_NAMES.get(target[:1].lower())
        if attr is None:
            return -1
        names: dict[str, str] = ctx.extra.get(T_ON, {})
        value = (
            getattr(ctx.tx, attr, "") if isinstance(ctx.tx, Transaction) else names.get(attr, "")
        )
        return 1 if value else -1

    # -- KSR.tm: state of the transaction -------------------------------------------------------
    @kemi()
    def t_is_canceled(self, ctx: MsgContext) -> int:
        """1 if the transaction was CANCELed."""
        tx = ctx.tx
        return 1 if isinstance(tx, Transaction) and tx.canceled else -1

    @kemi()
    def t_is_expired(self, ctx: MsgContext) -> int:
        """1 if the transaction ended."""
        tx = ctx.tx
        return 1 if isinstance(tx, Transaction) and tx.ended else -1

    def _branch(self, ctx: MsgContext) -> Any:
        return ctx.extra.get("t_branch")

    @kemi()
    def t_branch_timeout(self, ctx: MsgContext) -> int:
        """Failure route: 1 if the failed branch timed out."""
        b = self._branch(ctx)
        return 1 if b is not None and b.timed_out else -1

    @kemi()
    def t_branch_replied(self, ctx: MsgContext) -> int:
        """Failure route: 1 if the failed branch received some reply."""
        b = self._branch(ctx)
        return 1 if b is not None and b.replied else -1

    @kemi()
    def t_any_timeout(self, ctx: MsgContext) -> int:
        """1 if any branch timed out."""
        tx = ctx.tx
        return 1 if isinstance(tx, Transaction) and any(b.timed_out for b in tx.branches) else -1

    @kemi()
    def t_any_replied(self, ctx: MsgContext) -> int:
        """1 if any branch received a reply."""
        tx = ctx.tx
        return 1 if isinstance(tx, Transaction) and any(b.replied for b in tx.branches) else -1

    @kemi()
    def t_grep_status(self, ctx: MsgContext, code: int) -> int:
        """1 if any branch got this final status."""
        tx = ctx.tx
        if not isinstance(tx, Transaction):
            return -1
        return 1 if any(b.status == code and not b.local for b in tx.branches) else -1

    @kemi()
    def t_check_status(self, ctx: MsgContext, regex: str) -> int:
        """Match the status (the reply in onreply routes, the winning one in failure routes)."""
        code = self.status_code(ctx)
        if code <= 0:
            return -1
        try:
            return 1 if re.search(regex, str(code)) else -1
        except re.error:
            return -1

    @kemi()
    def t_get_status_code(self, ctx: MsgContext) -> int:
        """Status of the transaction's most relevant reply; -1 if none."""
        code = self.status_code(ctx)
        return code if code > 0 else -1

    @kemi()
    def t_get_branch_index(self, ctx: MsgContext) -> int:
        """Index of the current branch."""
        return ctx.branch_idx

    def status_code(self, ctx: MsgContext) -> int:
        """$T_reply_code: current reply (onreply), winning reply (failure), last sent (request)."""
        if not ctx.is_request:
            return ctx.reply.status
        if ctx.route in (RouteType.FAILURE, RouteType.BRANCH_FAILURE):
            b = self._branch(ctx)
            return b.status if b is not None else 0
        tx = ctx.tx
        if isinstance(tx, Transaction):
            return tx.status or (tx.reply_sent.status if tx.reply_sent is not None else 0)
        return 0

    # -- KSR.tm: timers -----------------------------------------------------------------------
    def _set_fr(self, ctx: MsgContext, inv: int, noninv: int) -> int:
        cur = ctx.extra.get("tm_fr") or (0, 0)
        ctx.extra["tm_fr"] = (noninv or cur[0], inv or cur[1])
        tx = ctx.tx
        if isinstance(tx, Transaction):
            if noninv:
                tx.fr = noninv / 1000.0
            if inv:
                tx.fr_inv = inv / 1000.0
            tx.timer_config = self.engine.timer_config(tx.fr, tx.fr_inv)
        return 1

    @kemi()
    def t_set_fr(self, ctx: MsgContext, fr_inv: int, fr: int) -> int:
        """t_set_fr(fr_inv_ms, fr_ms): final response timeouts for this transaction; 0 keeps."""
        return self._set_fr(ctx, fr_inv, fr)

    @kemi()
    def t_set_fr_inv(self, ctx: MsgContext, fr_inv: int) -> int:
        """t_set_fr_inv(ms)."""
        return self._set_fr(ctx, fr_inv, 0)

    @kemi()
    def t_reset_fr(self, ctx: MsgContext) -> int:
        """Back to the fr_timer/fr_inv_timer modparams."""
        ctx.extra.pop("tm_fr", None)
        return self._set_fr(ctx, self.params.fr_inv_timer, self.params.fr_timer)

    @kemi()
    def t_set_auto_inv_100(self, ctx: MsgContext, on: int) -> int:
        """t_set_auto_inv_100(0|1)."""
        if on:
            ctx.extra.pop("tm_no_100", None)
        else:
            ctx.extra["tm_no_100"] = True
        return 1

    @kemi()
    def t_set_disable_6xx(self, ctx: MsgContext, on: int) -> int:
        """Do not cancel the other branches on a 6xx."""
        if isinstance(ctx.tx, Transaction):
            ctx.tx.disable_6xx = bool(on)
        return 1

    @kemi()
    def t_set_disable_failover(self, ctx: MsgContext, on: int) -> int:
        """t_set_disable_failover(1): no DNS failover (use_dns_failover) for this transaction."""
        ctx.extra[NO_FAILOVER] = bool(on)
        if isinstance(ctx.tx, Transaction):
            ctx.tx.disable_failover = bool(on)
        return 1

    # -- KSR.tm: failure route helpers --------------------------------------------------------
    @kemi()
    def t_drop_replies(self, ctx: MsgContext, mode: str) -> int:
        """t_drop_replies("a"|"l"|"n"): forget earlier replies when choosing the final one."""
        tx = ctx.tx
        if not isinstance(tx, Transaction):
            return -1
        if mode in ("", "a"):
            tx.drop_from = len(tx.branches)
        elif mode == "l":
            tx.drop_from = len(tx.branches)
        return 1

    @kemi()
    def t_drop_replies_all(self, ctx: MsgContext) -> int:
        """Forget all earlier replies."""
        return self.t_drop_replies(ctx, "a")

    @kemi()
    def t_load_contacts(self, ctx: MsgContext) -> int:
        """Order the destination set by q for serial forking (t_next_contacts takes them)."""
        return self._load_contacts(ctx)

    @kemi(name="ki_t_load_contacts_mode")
    def t_load_contacts_mode(self, ctx: MsgContext, mode: int) -> int:
        """t_load_contacts with a mode (0 = by q groups)."""
        return self._load_contacts(ctx)

    def _load_contacts(self, ctx: MsgContext) -> int:
        if not ctx.branches:
            return 1  # one contact only: nothing to order
        from ksr.core.context import Branch

        main = Branch(ctx.ruri or "", ctx.dst_uri, -1, None, ctx.bflags, ctx.send_socket)
        allb = [main, *ctx.branches]
        allb.sort(key=lambda b: -(b.q if b.q >= 0 else 1000))  # stable: equal q keeps order
        ctx.extra["tm_contacts"] = allb
        ctx.branches = []
        return 1

    @kemi()
    def t_next_contacts(self, ctx: MsgContext) -> int:
        """Put the next q group of loaded contacts in R-URI and branches; -1 when none left."""
        pending = ctx.extra.get("tm_contacts")
        if pending is None and isinstance(ctx.tx, Transaction):
            pending = ctx.tx.extra.get("tm_contacts")
        if not pending:
            return -1
        q = pending[0].q
        group = [b for b in pending if b.q == q]
        rest = pending[len(group) :]
        first = group[0]
        ctx.ruri, ctx.dst_uri = first.uri, first.dst_uri
        ctx.branches = list(group[1:])
        ctx.extra["tm_contacts"] = rest
        if isinstance(ctx.tx, Transaction):
            ctx.tx.extra["tm_contacts"] = rest
        return 1

    @kemi()
    def t_uac_send(
        self,
        ctx: MsgContext,
        method: str,
        ruri: str,
        nexthop: str,
        socket: str,
        headers: str,
        body: str,
    ) -> int:
        """t_uac_send(method, ruri, nexthop, socket, headers, body): a new stateful request."""
        tx = self.send_request(method, ruri, headers, body.encode(), nexthop or None)
        return 1 if tx is not None else -1

    # -- RPC ----------------------------------------------------------------------------------
    @rpc("tm.stats", merge=SUM)
    def rpc_stats(self) -> dict[str, int]:
        """Transaction counters."""
        return {name: v for name, v in self.server.stats.items("tmx")}

    @rpc("tm.list", merge=JOIN)
    def rpc_list(self) -> list[dict[str, Any]]:
        """The transactions in memory."""
        out = []
        for tx in list(self.engine.by_key.values())[:1000]:
            out.append(
                {
                    "id": tx.id,
                    "method": tx.method,
                    "ruri": tx.ruri,
                    "status": tx.status,
                    "state": tx.machine.state if tx.machine else "",
                    "branches": len(tx.branches),
                    "call_id": tx.request.get("call-id") or "",
                }
            )
        return out

    def stop(self) -> None:
        for tx in list(self.engine.by_key.values()):
            self.engine.destroy(tx)


def _proxy_uri(proxy: str) -> tuple[str | None, str | None]:
    """ "udp:host:port" / "host:port" -> (sip URI, proto)."""
    proto, p = split_proto(proxy.strip())
    if not p:
        return None, None
    uri = f"sip:{p}" + (f";transport={proto}" if proto else "")
    return uri, proto


MODULE = Tm
