"""UDP listeners: a task per socket that waits until it is readable, and the clock's reads
while trio sleeps (ksr/core/idle_wait.py); both call the same ``UdpReader.wake``
(udp_read.py, compiled)."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import trio

from ksr.core.context import SocketInfo
from ksr.core.idle_wait import read_when_idle

from .udp_group import SO_TIMESTAMPNS, bind_udp
from .udp_read import BATCH, UdpReader, queue_age

if TYPE_CHECKING:
    from ksr.core.server import Server

log = logging.getLogger("ksr.udp")
__all__ = ["BATCH", "SO_TIMESTAMPNS", "UdpReader", "UdpTransport", "queue_age"]


class UdpTransport:
    def __init__(self, server: Server, sockets: list[SocketInfo], reuse_port: bool = False) -> None:
        self.server = server
        self.wanted = sockets
        self.reuse_port = reuse_port
        self.sockets: list[SocketInfo] = []
        self._socks: list[tuple[socket.socket, SocketInfo]] = []

    def _open(self, info: SocketInfo) -> tuple[socket.socket, SocketInfo]:
        # with worker processes the supervisor bound this worker's socket (ksr/workers.py)
        fd = self.server.udp_fds.get((info.ip, info.port))
        if fd is not None:
            s = socket.socket(fileno=fd)
            s.setblocking(False)
        else:
            s = bind_udp(info.ip, info.port, self.reuse_port)
        port = s.getsockname()[1]
        bound = SocketInfo(
            "udp", info.ip, port, info.name, info.advertised_ip, info.advertised_port
        )
        return s, bound

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            for info in self.wanted:
                self._socks.append(self._open(info))
            self.sockets = [b for _, b in self._socks]
            async with trio.open_nursery() as nursery:
                for s, info in self._socks:
                    nursery.start_soon(self._recv_loop, s, info)
                task_status.started()
        finally:
            for s, _ in self._socks:
                s.close()

    async def _recv_loop(self, sock: socket.socket, info: SocketInfo) -> None:
        reader = UdpReader(self.server, sock, info)
        # while trio sleeps, the serving clock reads the socket itself (ksr/core/idle_wait.py);
        # this task reads it when trio is busy, or always under another clock
        with read_when_idle(sock.fileno(), reader.wake):
            while True:
                await trio.lowlevel.wait_readable(sock)
                reader.wake()
                # no checkpoint here: wait_readable always parks this task (trio does not
                # look at the socket first), so timers and other tasks run between batches

    def _pick(self, sock: SocketInfo | None, host: str) -> socket.socket | None:
        v6 = ":" in host
        if sock is not None:
            for s, info in self._socks:
                if info.ip == sock.ip and info.port == sock.port:
                    return s
        for s, info in self._socks:
            if (":" in info.ip) == v6:
                return s
        return None

    def send(
        self, data: bytes, host: str, port: int, sock: SocketInfo | None = None, conn_id: int = 0
    ) -> bool:
        s = self._pick(sock, host)
        if s is None:
            return False
        try:
            s.sendto(data, (host, port))
        except BlockingIOError:
            log.warning("udp send buffer full, dropped a message to %s:%d", host, port)
            return False
        return True
