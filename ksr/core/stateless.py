"""Stateless proxying: replies made here without a transaction, and requests and replies
forwarded without one (Kamailio's sl_send_reply and forward()).

tm does the stateful counterparts; ``send_reply_any`` picks tm's when the request has a
transaction.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ksr.sip.builders import (
    make_via,
    reply_bytes,
    stateless_branch,
    via_destination,
    without_top_via,
)
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.message import Header, Message, Request

from .context import (
    VIA_ADD_SRVID,
    VIA_ADD_XAVP_PARAMS,
    VIA_USE_XAVP_FIELDS,
    Destination,
    MsgContext,
    SocketInfo,
)
from .xavp import newest_fields

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("ksr")


class Stateless:
    """Stateless replies and forwarding (``Server.send_reply_stateless``, ``forward_*``)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stats = server.core_stats
        # read for every local reply: worked out once (the configuration does not change
        # while serving; a script reload does not touch it)
        core = server.config.core
        self._server_header: str | None = None
        if core.server_signature and core.server_header:
            self._server_header = core.server_header.partition(":")[2].strip() or None

    def reply_destination(self, req: Message, proto: str) -> Destination:
        """Where replies to ``req`` go: its top Via's received/rport (RFC 3261 §18.2.2)."""
        fix = req.via_fix if isinstance(req, Request) else None
        transport, host, port = via_destination(fix.via if fix is not None else req.top_via, proto)
        return Destination(transport, host, port)  # compiled: a direct call, not one with *args

    def server_header(self) -> str | None:
        """The Server header value local replies carry (core.server_signature), or None."""
        return self._server_header

    def send_reply_stateless(
        self, ctx: MsgContext, code: int, reason: str, delay: float = 0.0
    ) -> bool:
        """Build and send a reply to the current request without a transaction (``delay``
        seconds later when given: auth slows down repeated failures that way)."""
        server = self.server
        req = ctx.request
        body, ctype = ctx.reply_body or (b"", None)
        contacts: list[str] | None = None
        if 300 <= code < 400 and (ctx.branches or (ctx.ruri and ctx.ruri != req.uri)):
            # the destination set: a rewritten R-URI (e.g. by lookup) and the branches
            contacts = [ctx.ruri or ""] + [x.uri for x in ctx.branches]
        try:
            # bytes straight away: a stateless reply is only sent, never looked at again
            data = reply_bytes(
                req, code, reason, None, ctx.reply_lumps, body, ctype, self._server_header, contacts
            )
            dest = self.reply_destination(req, ctx.proto)
        except RemoteProtocolError as err:
            log.debug("cannot reply: %s", err.reason)
            return False
        ctx.replied = code
        dest.proto = ctx.proto  # RFC 3261 §18.2.2: answer on the transport the request came on
        if delay > 0:
            server.timers.once(delay, server.send, dest, data, ctx.socket, ctx.conn_id)
            sent = True
        else:
            sent = server.send(dest, data, ctx.socket, ctx.conn_id)
        # counted once the reply has left: the statistics do not delay it
        self.stats.sl_replies.inc()
        if code >= 200:
            server.latency.request_done(req.method, ctx.timestamp)
        return sent

    def send_reply_any(self, ctx: MsgContext, code: int, reason: str) -> bool:
        """Stateful if tm has a transaction for this request, else stateless."""
        stateful = self.server.stateful
        # without a transaction on the context tm has nothing to answer with: no call into it
        if stateful is not None and ctx.tx is not None:
            done = stateful.reply_if_transaction(ctx, code, reason)
            if done is not None:
                return bool(done)
        return self.send_reply_stateless(ctx, code, reason)

    def make_via(self, ctx: MsgContext, sock: SocketInfo, branch: str) -> str:
        """Our Via for a request sent from ``sock``: the script's advertised address first,
        then corex's via flags (``ctx.via_flags``: host/port/proto from an xavp, srvid, xavp
        parameters)."""
        server = self.server
        host = ctx.advertised_address or sock.adv_ip
        port: int | str = ctx.advertised_port or sock.adv_port
        proto = sock.proto
        extra: dict[str, str | None] | None = None
        flags = ctx.via_flags
        if flags:
            extra = {}
            core = server.config.core
            if flags & VIA_USE_XAVP_FIELDS and core.xavp_via_fields:
                fields = newest_fields(ctx.xavps, core.xavp_via_fields)
                host = str(fields.get("address", host))
                port = str(fields.get("port", port))
                proto = str(fields.get("proto", proto))
            if flags & VIA_ADD_SRVID and core.server_id:
                extra["srvid"] = str(core.server_id)
            if flags & VIA_ADD_XAVP_PARAMS and core.xavp_via_params:
                for name, value in newest_fields(ctx.xavps, core.xavp_via_params).items():
                    extra.setdefault(name, str(value))
        return make_via(
            proto,
            host,
            port,
            branch,
            rport=ctx.local_rport,
            worker=server.worker_id if server.handoff is not None else None,
            params=extra,
        )

    def forward_stateless(self, ctx: MsgContext, uri: str | None) -> bool:
        """Forward the request statelessly to ``uri`` or $du/R-URI (Kamailio's forward())."""
        server = self.server
        if not ctx.is_request:
            return server.forward_reply_stateless(ctx)
        target = uri or ctx.next_hop()
        if not target:
            return False
        found = server.resolve_now(target)
        if found is None:
            log.warning("forward: cannot resolve %s", target)
            return False
        if isinstance(found, str):  # ASK (``==`` would run Destination's generated __eq__)
            # sent when the name resolves; the script goes on now (the message is prepared
            # with what the script set, as it would be sent at once)
            data = self._out(ctx)
            if data is None:
                return False
            out, branch = data
            server.resolve_later(
                target, lambda d: self._forward_resolved(ctx, out, branch, target, d)
            )
            return True
        assert isinstance(found, Destination)
        data = self._out(ctx)
        if data is None:
            return False
        out, branch = data
        return self._forward_to(ctx, out, branch, found)

    def _out(self, ctx: MsgContext) -> tuple[Message, str] | None:
        out = ctx.apply_lumps()
        try:
            branch = stateless_branch(ctx.request)
        except RemoteProtocolError:
            return None
        return out, branch

    def _forward_to(self, ctx: MsgContext, out: Message, branch: str, dest: Destination) -> bool:
        server = self.server
        sock = server.socket_for(dest.proto, ctx)
        if sock is None:
            return False
        # this object's own make_via (server.make_via is it): a native call, not a look-up on
        # the interpreted Server and a bound method
        out.headers.insert(0, Header("Via", self.make_via(ctx, sock, branch)))
        ok = server.send(dest, out.to_bytes(), sock)
        if ok:
            self.stats.fwd_requests.inc()
        return ok

    def _forward_resolved(
        self, ctx: MsgContext, out: Message, branch: str, target: str, dest: Destination | None
    ) -> None:
        if dest is None:
            log.warning("forward: cannot resolve %s, request dropped", target)
            self.stats.drop_requests.inc()
            return
        if not self._forward_to(ctx, out, branch, dest):
            log.warning("forward: sending to %s:%s:%d failed", dest.proto, dest.host, dest.port)

    def forward_reply_stateless(self, ctx: MsgContext) -> bool:
        """Remove our Via and send the reply to the next one (RFC 3261 §16.7 step 9)."""
        out = ctx.apply_lumps()
        try:
            vias = ctx.msg.vias
        except RemoteProtocolError:
            self.stats.err_replies.inc()
            return False
        if len(vias) < 2:
            self.stats.drop_replies.inc()
            return False
        out.headers = without_top_via(out.headers)
        dest = Destination(*via_destination(vias[1]))
        ok = self.server.send(dest, out.to_bytes())
        if ok:
            self.stats.fwd_replies.inc()
        return ok
