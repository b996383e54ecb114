"""siptrace: copies of SIP messages to a capture server (Homer, Kamailio's sipcapture) as HEPv3
over UDP or TCP, or as plain SIP over UDP. KSR.siptrace, the siptrace.status RPC.

What is copied: with ``trace_mode = 1`` every message received and sent; otherwise what the
script asks for with ``sip_trace()`` and friends: the current message (mode "m"), its whole
transaction ("t"; the default when ``trace_flag`` is set on the message) or its whole dialog
("d"). Nothing is copied while ``trace_on`` is 0 (Kamailio's default; ``siptrace.status on``).
The HEP encoding is sans-IO in ``ksr/sip/hep.py``; sending is in ``sender.py``.
"""

from __future__ import annotations

import logging
import time

import trio

from ksr.core.config import ConfigError
from ksr.core.context import Destination, MsgContext, SocketInfo
from ksr.core.module import ModParams, Module
from ksr.core.rpc import RpcError, rpc
from ksr.kemi.registry import kemi
from ksr.sip import hep
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.message import Message

from .sender import CaptureSender, Target
from .traced import TracedSet, keys_of

log = logging.getLogger("ksr.siptrace")


class SiptraceParams(ModParams):
    duplicate_uri: str = ""  # sip:IP:PORT[;transport=tcp]
    hep_mode_on: int = 0
    hep_version: int = 1  # Kamailio's default; ksr sends HEPv3 only: set 3 with hep_mode_on
    hep_capture_id: int = 1
    trace_mode: int = 0  # 1: copy every message received and sent (HEP)
    trace_on: int = 0
    trace_flag: int = 0  # a message flag: sip_trace() without mode traces the transaction
    force_send_sock: str = ""  # sip:IP:PORT of the UDP listener HEP leaves from
    auth_key: str = ""
    trace_local_ip: str = ""  # IP[:PORT] written as source of what ksr sends
    # accepted for Kamailio configurations (no database storage in ksr: docs/modules/siptrace.md)
    db_url: str = ""
    table: str = "sip_trace"
    trace_to_database: int = 1
    trace_sl_acks: int = 1
    xheaders_write: int = 0
    xheaders_read: int = 0
    traced_user_avp: str = ""
    trace_table_avp: str = ""
    trace_delayed: int = 0


def _ip_proto(proto: str) -> int:
    return hep.IPPROTO_UDP if proto == "udp" else hep.IPPROTO_TCP


class Siptrace(Module):
    name = "siptrace"
    Params = SiptraceParams

    def init(self) -> None:
        p: SiptraceParams = self.params
        source = self.server.config.source
        if p.hep_mode_on and p.hep_version != 3:
            raise ConfigError(
                f"[modparam.siptrace] hep_version = {p.hep_version}: ksr sends HEP version 3 "
                "only; set hep_version = 3",
                source,
            )
        if p.trace_mode not in (0, 1):
            raise ConfigError("[modparam.siptrace] trace_mode: 0 or 1", source)
        if p.db_url and p.trace_to_database:
            log.warning(
                "siptrace: storing traces in a database is not supported; set "
                "trace_to_database = 0 and send them to a capture server (duplicate_uri)"
            )
        self.enabled = bool(p.trace_on)
        self.traced = TracedSet()
        self.sender = CaptureSender(self.server, p.force_send_sock)
        self.default_target: Target | None = None
        if p.duplicate_uri:
            try:
                self.default_target = Target.parse(p.duplicate_uri)
            except ValueError as err:
                raise ConfigError(f"[modparam.siptrace] duplicate_uri: {err}", source) from None
        self.local_ip, self.local_port = _split_local(p.trace_local_ip)
        self.c_sent = self.server.stats.counter(
            "siptrace", "traced_messages", doc="Copies of SIP messages sent to a capture server"
        )
        self.server.receive_taps.append(self._on_receive)
        self.server.send_taps.append(self._on_send)

    async def start(self, nursery: trio.Nursery) -> None:
        await self.sender.start(nursery)
        self.server.timers.every(30, lambda: self.traced.expire(time.monotonic()))

    def stop(self) -> None:
        self.sender.stop()

    # -- what gets copied --------------------------------------------------------------------
    def _on_receive(self, msg: Message, src_ip: str, src_port: int, sock: SocketInfo) -> None:
        if not self.enabled:
            return
        if self.params.trace_mode == 1:
            uri = self.params.duplicate_uri
        elif self.traced:
            uri = self._traced_uri(msg)
        else:
            return
        if uri:
            self.copy(uri, msg.to_bytes(), src_ip, src_port, sock.ip, sock.port, sock.proto)

    def _on_send(self, dest: Destination, data: bytes, sock: SocketInfo | None) -> None:
        if not self.enabled:
            return
        if self.params.trace_mode == 1:
            uri = self.params.duplicate_uri
        elif self.traced:
            keys = keys_of(data)
            uri = self.traced.match(*keys, time.monotonic()) if keys else None
        else:
            return
        if not uri:
            return
        s = sock or self.server.socket_for(dest.proto)
        ip = self.local_ip or (s.adv_ip if s is not None else "0.0.0.0")
        port = self.local_port or (s.adv_port if s is not None else 0)
        self.copy(uri, data, ip, port, dest.host, dest.port, dest.proto)

    def _traced_uri(self, msg: Message) -> str | None:
        try:
            cseq = msg.cseq
            call_id = msg.call_id
        except RemoteProtocolError:
            return None
        status = 0 if msg.is_request else int(getattr(msg, "status", 0))
        return self.traced.match(call_id, cseq.number, cseq.method, status, time.monotonic())

    def copy(
        self,
        uri: str,
        data: bytes,
        src_ip: str,
        src_port: int,
        dst_ip: str,
        dst_port: int,
        proto: str,
        correlation_id: str = "",
        proto_type: int = hep.PROTO_SIP,
    ) -> bool:
        """Send one copy to the capture server ``uri``: HEP when hep_mode_on, else the SIP."""
        target = self.default_target if uri == self.params.duplicate_uri else None
        if target is None:
            try:
                target = Target.parse(uri)
            except ValueError as err:
                log.warning("siptrace: bad capture address %r: %s", uri, err)
                return False
        if self.params.hep_mode_on:
            now = time.time()
            try:
                packet = hep.encode(
                    hep.HepPacket(
                        src_ip=src_ip,
                        src_port=src_port,
                        dst_ip=dst_ip,
                        dst_port=dst_port,
                        payload=data,
                        time_sec=int(now),
                        time_usec=int(now % 1 * 1_000_000),
                        ip_proto=_ip_proto(proto),
                        proto_type=proto_type,
                        capture_id=self.params.hep_capture_id,
                        correlation_id=correlation_id.encode(),
                        auth_key=self.params.auth_key.encode(),
                    )
                )
            except hep.HepError as err:
                log.debug("siptrace: cannot encode a copy: %s", err)
                return False
        else:
            packet = data
        if self.sender.send(target, packet):
            self.c_sent.inc()
            return True
        return False

    # -- KSR.siptrace ------------------------------------------------------------------------
    def _trace(self, ctx: MsgContext, uri: str, cid: str, mode: str) -> int:
        if not self.enabled:
            return -1
        uri = uri or self.params.duplicate_uri
        if not uri:
            log.warning("siptrace: no capture address (duplicate_uri) to send to")
            return -1
        msg = ctx.msg
        if not mode:
            flag = self.params.trace_flag
            mode = "t" if flag and ctx.flags & (1 << flag) and msg.is_request else "m"
        m = mode[:1].lower()
        if m not in ("m", "t", "d"):
            log.warning("siptrace: unknown trace mode %r (m, t or d)", mode)
            return -1
        if m != "m":
            try:
                call_id, number = msg.call_id, msg.cseq.number
            except RemoteProtocolError:
                return -1
            now = time.monotonic()
            if m == "d":
                self.traced.add_dialog(call_id, uri, now)
            else:
                self.traced.add_transaction(call_id, number, uri, now)
        sock = ctx.socket
        ok = self.copy(
            uri,
            msg.to_bytes(),
            ctx.src_ip,
            ctx.src_port,
            sock.ip,
            sock.port,
            ctx.proto,
            correlation_id=cid,
        )
        return 1 if ok else -1

    @kemi()
    def sip_trace(self, ctx: MsgContext) -> int:
        """Copy the current message to duplicate_uri (its transaction when trace_flag is set)."""
        return self._trace(ctx, "", "", "")

    @kemi()
    def sip_trace_dst(self, ctx: MsgContext, duri: str) -> int:
        """sip_trace(duri): copy to the capture server duri (sip:IP:PORT[;transport=tcp])."""
        return self._trace(ctx, duri, "", "")

    @kemi()
    def sip_trace_dst_cid(self, ctx: MsgContext, duri: str, cid: str) -> int:
        """sip_trace(duri, correlation_id): with a HEP correlation id."""
        return self._trace(ctx, duri, cid, "")

    @kemi()
    def sip_trace_dst_cid_type(self, ctx: MsgContext, duri: str, cid: str, stype: str) -> int:
        """sip_trace(duri, correlation_id, mode): mode m (message), t (transaction), d (dialog)."""
        return self._trace(ctx, duri, cid, stype)

    @kemi()
    def sip_trace_mode(self, ctx: MsgContext, smode: str) -> int:
        """Trace in this mode to duplicate_uri: m/M message, t/T transaction, d/D dialog."""
        return self._trace(ctx, "", "", smode)

    @kemi()
    def hlog(self, ctx: MsgContext, message: str) -> int:
        """Send a log event (HEP type 100) to duplicate_uri, correlated by the Call-ID."""
        try:
            cid = ctx.msg.call_id
        except RemoteProtocolError:
            cid = ""
        return self.hlog_cid(ctx, cid, message)

    @kemi()
    def hlog_cid(self, ctx: MsgContext, correlationid: str, message: str) -> int:
        """hlog with the given correlation id."""
        if not self.enabled or not self.params.duplicate_uri or not self.params.hep_mode_on:
            return -1
        sock = ctx.socket
        ok = self.copy(
            self.params.duplicate_uri,
            message.encode("utf-8", "surrogateescape"),
            ctx.src_ip,
            ctx.src_port,
            sock.ip,
            sock.port,
            ctx.proto,
            correlation_id=correlationid,
            proto_type=hep.PROTO_LOG,
        )
        return 1 if ok else -1

    # -- RPC ---------------------------------------------------------------------------------
    @rpc("siptrace.status")
    def rpc_status(self, what: str = "check") -> str:
        """siptrace.status on|off|check: turn tracing on or off, or say whether it is on."""
        w = str(what).lower()
        if w.startswith("on"):
            self.enabled = True
        elif w.startswith("off"):
            self.enabled = False
        elif not w.startswith("check"):
            raise RpcError(500, "Bad parameter (on, off or check)")
        return "Enabled" if self.enabled else "Disabled"


def _split_local(spec: str) -> tuple[str, int]:
    if not spec:
        return "", 0
    host, sep, port = spec.rpartition(":")
    if sep and port.isdigit() and not host.endswith(":"):
        return host.strip("[]"), int(port)
    return spec.strip("[]"), 0


MODULE = Siptrace
