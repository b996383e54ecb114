"""Sending copies to a capture server: UDP from a SIP listener (as Kamailio does), or one kept
TCP connection per capture server, fed through a bounded queue (the script never waits)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ksr.core.context import SocketInfo
from ksr.core.hosts import HostTable
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.uri import parse_uri

if TYPE_CHECKING:
    from ksr.core.core_api import Core

log = logging.getLogger("ksr.siptrace")

QUEUE = 10_000  # copies waiting for a TCP connection; more are dropped (and counted)
RECONNECT = 1.0  # seconds between attempts to reach a TCP capture server


@dataclass(frozen=True, slots=True)
class Target:
    proto: str  # udp or tcp
    host: str
    port: int

    @classmethod
    def parse(cls, uri: str) -> Target:
        """``sip:IP:PORT`` (UDP) or ``sip:IP:PORT;transport=tcp``; the host must be an IP
        address (a capture server is not worth a DNS lookup per copy)."""
        text = uri if ":" in uri.split(";", 1)[0] and uri.startswith("sip") else f"sip:{uri}"
        try:
            u = parse_uri(text)
        except RemoteProtocolError as err:
            raise ValueError(err.reason) from None
        proto = (u.params.get("transport") or "udp").lower()
        if proto not in ("udp", "tcp"):
            raise ValueError(f"transport={proto}: udp or tcp")
        host = u.host.strip("[]")
        if not HostTable().is_ip(host):
            raise ValueError(f"{u.host} is not an IP address")
        return cls(proto, host, u.port or 9060)


class CaptureSender:
    def __init__(self, server: Core, force_send_sock: str) -> None:
        self.server = server
        self.force_send_sock = force_send_sock
        self.nursery: trio.Nursery | None = None
        self.queues: dict[Target, trio.MemorySendChannel[bytes]] = {}
        self.dropped = server.stats.counter(
            "siptrace", "dropped_copies", doc="Copies not sent: the capture server was unreachable"
        )

    async def start(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery

    def stop(self) -> None:
        for q in self.queues.values():
            q.close()
        self.queues.clear()

    def _udp_socket(self) -> SocketInfo | None:
        udp = [s for s in self.server.listeners if s.proto == "udp"]
        if self.force_send_sock:
            want = self.force_send_sock.removeprefix("sip:").removeprefix("udp:")
            for s in udp:
                if want in (f"{s.ip}:{s.port}", s.ip):
                    return s
        return udp[0] if udp else None

    def send(self, target: Target, packet: bytes) -> bool:
        if target.proto == "udp":
            t = self.server.transports.get("udp")
            sock = self._udp_socket()
            if t is None or sock is None:
                log.warning("siptrace: no UDP listener to send copies from")
                return False
            try:
                # the transport directly: Server.send would trace the copy itself
                return bool(t.send(packet, target.host, target.port, sock))
            except OSError as err:
                log.debug("siptrace: copy to %s:%d failed: %s", target.host, target.port, err)
                return False
        q = self.queues.get(target)
        if q is None:
            if self.nursery is None:
                return False
            q, rx = trio.open_memory_channel[bytes](QUEUE)
            self.queues[target] = q
            self.nursery.start_soon(self._tcp_sender, target, rx)
        try:
            q.send_nowait(packet)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.dropped.inc()
            return False
        return True

    async def _tcp_sender(self, target: Target, rx: trio.MemoryReceiveChannel[bytes]) -> None:
        """One connection to a TCP capture server, opened again when it breaks."""
        pending: bytes | None = None
        async with rx:
            while True:
                try:
                    stream = await trio.open_tcp_stream(target.host, target.port)
                except OSError as err:
                    log.warning(
                        "siptrace: cannot connect to %s:%d: %s", target.host, target.port, err
                    )
                    await trio.sleep(RECONNECT)
                    continue
                try:
                    async with stream:
                        if pending is not None:
                            await stream.send_all(pending)
                            pending = None
                        async for packet in rx:
                            pending = packet
                            await stream.send_all(packet)
                            pending = None
                        return  # the queue was closed: stopping
                except (trio.BrokenResourceError, OSError) as err:
                    log.warning(
                        "siptrace: connection to %s:%d lost: %s", target.host, target.port, err
                    )
                    await trio.sleep(RECONNECT)
