"""websocket: SIP over WebSocket (RFC 7118) — the handshake from the script, closing, events.

``KSR.websocket.handle_handshake()`` inside ``xhttp:request`` turns the HTTP connection into a
WebSocket connection; ``ws:``/``wss:`` listeners do the same without the script. When a
WebSocket connection ends, ``event_callback`` runs with ``"websocket:closed"`` ($conid, $si,
$sp name the connection).
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ksr.core.context import MsgContext, RouteType
from ksr.core.module import ModParams, Module
from ksr.core.rpc import RpcError, rpc
from ksr.kemi.registry import kemi
from ksr.modules.xhttp.api import XhttpApi
from ksr.transport.hooks import hooks
from ksr.transport.http import HttpExchange
from ksr.transport.stream import Connection
from ksr.transport.ws import NORMAL_CLOSURE, WsHandler, accept_websocket

log = logging.getLogger("ksr.websocket")
EVENT_CLOSED = "websocket:closed"
SUB_PROTOCOL_SIP = 1
SUB_PROTOCOL_MSRP = 2


class WebsocketParams(ModParams):
    event_callback: str = ""
    sub_protocols: int = SUB_PROTOCOL_SIP | SUB_PROTOCOL_MSRP  # bit flags: 1 sip, 2 msrp
    cors_mode: int = 0  # accepted for Kamailio configs; ksr adds no CORS headers
    keepalive_mechanism: int = 0  # accepted; ksr answers pings but sends none
    keepalive_timeout: int = 180
    keepalive_interval: int = 1
    keepalive_processes: int = 1
    ping_application_data: str = ""
    timer_interval: int = 1
    verbose_list: int = 0


class Websocket(Module):
    name = "websocket"
    Params = WebsocketParams
    events = (EVENT_CLOSED,)

    def init(self) -> None:
        h = hooks(self.server)
        h.ws_accept, h.ws_closed = self.accept, self.on_closed
        self.xhttp = self.optional("xhttp", XhttpApi)
        st = self.server.stats
        self.c_ok = st.counter(
            "websocket", "ws_successful_handshakes", doc="WebSocket handshakes accepted"
        )
        self.c_failed = st.counter(
            "websocket", "ws_failed_handshakes", doc="WebSocket handshakes refused"
        )
        self.c_local_closed = st.counter(
            "websocket", "ws_local_closed_connections", doc="WebSocket connections closed here"
        )
        self.c_remote_closed = st.counter(
            "websocket",
            "ws_remote_closed_connections",
            doc="WebSocket connections closed by the peer",
        )
        st.gauge(
            "websocket",
            "ws_current_connections",
            lambda: len(self._ws_connections()),
            "WebSocket connections open",
        )

    def allowed(self) -> tuple[str, ...]:
        sp = self.params.sub_protocols
        return tuple(
            p for bit, p in ((SUB_PROTOCOL_SIP, "sip"), (SUB_PROTOCOL_MSRP, "msrp")) if sp & bit
        )

    def accept(self, ex: HttpExchange, extra_headers: list[tuple[str, str]] | None = None) -> bool:
        """Answer an upgrade request (also used by ws/wss listeners)."""
        ok = accept_websocket(ex, self.allowed(), extra_headers or [])
        (self.c_ok if ok else self.c_failed).inc()
        return ok

    def _ws_connections(self) -> list[Connection]:
        out: list[Connection] = []
        seen: set[int] = set()
        for proto in ("ws", "wss"):
            t = self.server.transports.get(proto)
            if t is None or id(t.table) in seen:
                continue
            seen.add(id(t.table))
            out.extend(c for c in t.table.by_id.values() if isinstance(c.handler, WsHandler))
        return out

    def _find(self, conn_id: int) -> Connection | None:
        return next((c for c in self._ws_connections() if c.id == conn_id), None)

    def on_closed(self, conn: Connection, handler: WsHandler) -> None:
        """A WebSocket connection ended: count it and run the event callback."""
        (self.c_local_closed if handler.closed_by == "local" else self.c_remote_closed).inc()
        cb = self.params.event_callback
        if not cb:
            return
        ctx = self.server.faked_context()
        ctx.src_ip, ctx.src_port, ctx.conn_id = conn.peer[0], conn.peer[1], conn.id
        ctx.socket, ctx.proto = conn.local, conn.proto
        ctx.route = RouteType.EVENT
        self.server.run_event(cb, EVENT_CLOSED, ctx)

    # -- KSR.websocket -------------------------------------------------------------------------
    @kemi()
    def handle_handshake(self, ctx: MsgContext) -> int:
        """In xhttp:request: check the Upgrade request and switch the connection to WebSocket.
        1 on success; 0 when the request was refused (the error reply is sent)."""
        ex = self.xhttp.exchange(ctx) if self.xhttp is not None else None
        if ex is None:
            return -1
        extra = [(h.name, h.value) for h in ctx.reply_lumps]
        return 1 if self.accept(ex, extra) else 0

    def _close(self, conn_id: int, status: int, reason: str) -> int:
        conn = self._find(conn_id)
        if conn is None or not isinstance(conn.handler, WsHandler):
            return -1
        return 1 if conn.handler.close(conn, status, reason) else -1

    @kemi()
    def close(self, ctx: MsgContext) -> int:
        """Close the WebSocket connection of the current message (1000 "Normal closure")."""
        return self._close(ctx.conn_id, NORMAL_CLOSURE, "Normal closure")

    @kemi()
    def close_reason(self, ctx: MsgContext, status: int, reason: str) -> int:
        """close_reason(status, reason): close the current WebSocket connection."""
        return self._close(ctx.conn_id, status, reason)

    @kemi()
    def close_conid(self, ctx: MsgContext, status: int, reason: str, conid: int) -> int:
        """close_conid(status, reason, conid): close the WebSocket connection with that id."""
        return self._close(conid, status, reason)

    # -- RPC -----------------------------------------------------------------------------------
    @rpc("ws.dump")
    def rpc_dump(self, order: str = "id_hash") -> dict[str, Any]:
        """List the WebSocket connections."""
        now = trio.current_time()
        conns = sorted(self._ws_connections(), key=lambda c: c.id)
        items = []
        for c in conns:
            h = c.handler
            assert isinstance(h, WsHandler)
            items.append(
                {
                    "id": c.id,
                    "proto": c.proto,
                    "src": f"{c.peer[0]}:{c.peer[1]}",
                    "dst": f"{c.local.ip}:{c.local.port}",
                    "state": "CLOSING" if c.closing else "OPEN",
                    "sub_protocol": h.subprotocol,
                    "last_used": int(now - c.last_used),
                    "frames_in": h.frames_in,
                    "frames_out": h.frames_out,
                }
            )
        return {"connections": items, "info": {"wscounter": len(items), "truncated": False}}

    @rpc("ws.close")
    def rpc_close(self, conid: int | str) -> None:
        """ws.close id: close a WebSocket connection (1000)."""
        try:
            cid = int(conid)
        except (TypeError, ValueError):
            raise RpcError(500, "Bad connection ID parameter") from None
        if self._close(cid, NORMAL_CLOSURE, "Normal closure") < 0:
            raise RpcError(500, "Unknown connection ID")


MODULE = Websocket
