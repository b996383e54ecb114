"""The receive pipeline: bytes from a transport → a parsed message → the script → on.

``receive`` hands a message owned by another worker process over (docs/workers.md);
``receive_here`` parses it (a request that cannot be parsed but can be answered gets its
400/513 here), counts it and routes it: a request through ``on_request`` (received/rport,
overload shedding, request hooks, the request route, which may wait on I/O), a reply through
``on_reply`` (ours only, the reply route, the reply handlers such as tm, else forwarded
statelessly).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ksr.sip.builders import default_reason
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.message import Header, Request, Response, parse_message_untrusted
from ksr.sip.owner import parsed_owner
from ksr.sip.received import received_fix

from .context import MsgContext, RouteType, SocketInfo

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("ksr")

RetransmissionKey = tuple[str, str, str, int | None]


class Pipeline:
    """What happens to every message received (``Server.receive`` and the steps after it)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stats = server.core_stats
        # the script's route names, read for every message (not through four attributes)
        kemi = server.config.core.kemi
        self.request_route: str = kemi.request_route_callback
        self.reply_route: str = kemi.reply_route_callback
        # requests whose route waits on I/O, by what makes a retransmission the same request
        self.waiting: dict[RetransmissionKey, int] = {}

    def receive(
        self, data: bytes, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int = 0
    ) -> None:
        """One message from the network (a datagram or a framed stream message). With worker
        processes, a message owned by another worker goes there (docs/workers.md)."""
        handoff = self.server.handoff
        if handoff is None:
            self.receive_here(data, src_ip, src_port, sock, conn_id)
            return
        # parsed first, then the owner read from the parse (its Call-ID and top Via): the kernel
        # steers nearly every message to its owner, which needs the parse anyway, where a
        # search of the bytes before it cost ~13k instructions per message
        msg = self.parse(data, src_ip, src_port, sock, conn_id)
        if msg is None:
            return
        owner = parsed_owner(msg, handoff.count)
        if (
            owner is not None
            and owner != handoff.index
            and handoff.relay_to(owner, data, src_ip, src_port, sock, conn_id)
        ):
            return
        self.route_parsed(msg, src_ip, src_port, sock, conn_id)

    def receive_here(
        self, data: bytes, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int = 0
    ) -> None:
        """Handle a message in this worker (received here or handed over by another worker)."""
        msg = self.parse(data, src_ip, src_port, sock, conn_id)
        if msg is not None:
            self.route_parsed(msg, src_ip, src_port, sock, conn_id)

    def parse(
        self, data: bytes, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int
    ) -> Request | Response | None:
        """The parsed message, or None: it could not be parsed (a request that can be answered
        got its 400/513, anything else was dropped)."""
        server = self.server
        try:
            # a WebSocket message carries exactly one SIP message, like a datagram (RFC 7118)
            return parse_message_untrusted(
                data,
                datagram=sock.proto in ("udp", "ws", "wss"),
                max_size=server.max_message_size,
            )
        except RemoteProtocolError as err:
            self.stats.bad_msg_hdr.inc()
            partial = err.partial
            if partial is not None and partial.method != "ACK":
                self.reply_to_bad(partial, err, src_ip, src_port, sock, conn_id)
            else:
                log.debug("dropped malformed message from %s:%d: %s", src_ip, src_port, err.reason)
            return None
        except Exception as err:  # a parser bug: one line, not a traceback per message
            self.stats.bad_msg_hdr.inc()
            server.bad_input.warning(
                "parser failed on a message from %s:%d: %s: %s",
                src_ip,
                src_port,
                type(err).__name__,
                err,
            )
            return None

    def route_parsed(
        self, msg: Request | Response, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int
    ) -> None:
        """A parsed message: the receive taps, its counters, then on_request or on_reply. The
        timers read the clock once for it (``TimerService.hold``)."""
        server = self.server
        timers = server.timers
        held = timers.hold()
        try:
            if server.receive_taps:
                for tap in server.receive_taps:
                    tap(msg, src_ip, src_port, sock)
            if isinstance(msg, Request):
                self.stats.on_request(msg)
                self.on_request(msg, src_ip, src_port, sock, conn_id)
            else:
                self.stats.on_reply(msg)
                self.on_reply(msg, src_ip, src_port, sock, conn_id)
        finally:
            if held:
                timers.release()

    def reply_to_bad(
        self,
        req: Request,
        err: RemoteProtocolError,
        src_ip: str,
        src_port: int,
        sock: SocketInfo,
        conn_id: int,
    ) -> None:
        """Answer a request that could not be parsed whole (err.status_hint), if it can be."""
        try:
            req.top_via  # noqa: B018 - a reply needs a readable Via
            for key in ("from", "to", "call-id", "cseq"):
                if req.get(key) is None:
                    raise RemoteProtocolError(f"missing {key}")
        except RemoteProtocolError:
            log.debug("dropped malformed request from %s:%d: %s", src_ip, src_port, err.reason)
            return
        ctx = MsgContext(self.server, req, src_ip, src_port, sock, conn_id)
        self.apply_received(ctx)
        self.server.send_reply_stateless(ctx, err.status_hint, _reason_for(err))

    def on_request(
        self, req: Request, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int
    ) -> None:
        server = self.server
        ctx = MsgContext(server, req, src_ip, src_port, sock, conn_id)
        try:
            self.apply_received(ctx)
        except RemoteProtocolError as err:
            self.reply_to_bad(req, err, src_ip, src_port, sock, conn_id)
            return
        if server.rx_age > server.shed_age > 0 and req.method == "INVITE" and self.shed(ctx):
            return
        for hook in server.request_hooks:
            if hook(ctx):
                return
        if self.waiting:
            key = _retransmission_key(req)
            if key is not None and key in self.waiting:
                # its route waits on I/O: the first copy will be answered (RFC 3261 §17.2)
                self.stats.suspended_retransmissions.inc()
                return
        rc = server.start_route(ctx, self.request_route, self.routed)
        if rc is None:
            key = _retransmission_key(req)
            if key is not None:
                self.waiting[key] = self.waiting.get(key, 0) + 1
                ctx.extra["_waiting_key"] = key
            return
        self.routed(ctx, rc)

    def routed(self, ctx: MsgContext, rc: int) -> None:
        """A request route finished (at once, or after waiting on I/O)."""
        key = ctx.extra.pop("_waiting_key", None) if ctx.extra else None
        if key is not None:
            n = self.waiting.get(key, 0) - 1
            if n > 0:
                self.waiting[key] = n
            else:
                self.waiting.pop(key, None)
        if rc == 0:
            self.stats.script_errors.inc()
            if ctx.method != "ACK" and not ctx.replied:
                self.stats.err_requests.inc()
                self.server.send_reply_any(ctx, 500, "Server Internal Error")
        elif rc == 2:
            log.error(
                "%s: no %s() to route requests",
                self.server.script_path,
                self.request_route,
            )
        for hook in self.server.routed_hooks:
            hook(ctx)

    def shed(self, ctx: MsgContext) -> bool:
        """Overload: answer a new INVITE 503 instead of routing it, while the receive queue is
        older than core.shed_queue_age. A retransmission of an INVITE already relayed (tm has
        its transaction) or an in-dialog one is routed as usual: the script absorbs it."""
        req = ctx.request
        try:
            if req.to_tag is not None:
                return False
        except RemoteProtocolError:
            return False
        stateful = self.server.stateful
        if stateful is not None and stateful.has_transaction(req):
            return False
        self.stats.shed_requests.inc()
        ctx.reply_lumps.append(Header("Retry-After", "1"))
        self.server.send_reply_stateless(ctx, 503, "Service Unavailable")
        return True

    def on_reply(
        self, rpl: Response, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int
    ) -> None:
        server = self.server
        ctx = MsgContext(server, rpl, src_ip, src_port, sock, conn_id)
        ctx.route = RouteType.REPLY
        try:
            top = rpl.top_via  # only ours matters here: the others are parsed when needed
        except RemoteProtocolError:
            self.stats.err_replies.inc()
            return
        if not server.is_myself_via(top.host, top.port):
            self.stats.drop_replies.inc()  # RFC 3261 §18.1.2: a stray response is discarded
            return
        server.run_route(ctx, self.reply_route)
        if ctx.drop:
            self.stats.drop_replies.inc()
            return
        for handler in server.reply_handlers:
            if handler(ctx):
                return
        server.forward_reply_stateless(ctx)

    def apply_received(self, ctx: MsgContext) -> None:
        """RFC 3261 §18.2.1 received= and RFC 3581 rport= for the top Via of what is sent on:
        the received request keeps its bytes (see ksr.sip.received)."""
        req = ctx.msg
        assert isinstance(req, Request)
        req.via_fix = received_fix(req, ctx.src_ip, ctx.src_port, ctx.force_rport)

    def apply_rport(self, ctx: MsgContext) -> None:
        if ctx.is_request:
            try:
                self.apply_received(ctx)
            except RemoteProtocolError:
                pass


def _retransmission_key(req: Request) -> RetransmissionKey | None:
    """What makes a retransmission the same request: top Via branch and sent-by, method."""
    try:
        via = req.top_via
    except RemoteProtocolError:
        return None
    return (via.branch or "", req.method, via.host, via.port)


def _reason_for(err: RemoteProtocolError) -> str:
    if err.status_hint == 400:
        return f"Bad Request - {err.reason}"[:120]
    return default_reason(err.status_hint)
