"""UDP listeners. The receive loop waits until a socket is readable, then drains it with
non-blocking calls (measured here: ~2.6x the packet rate of one await per packet). The first
datagram of a wake-up is routed before the rest is read, unless it is old enough to be shed:
at a low rate its reply leaves before the read that finds the queue empty (a raised
BlockingIOError, ~13 us at 100 requests/s: bench/README.md). Whether more is queued is then
asked with FIONREAD: when nothing is, as at a low rate, the read that would raise
BlockingIOError (~7,000 instructions with the exception) is not made (~1,600)."""

from __future__ import annotations

import array
import fcntl
import logging
import socket
import struct
import termios
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ksr.core.context import SocketInfo
from ksr.core.idle_wait import read_when_idle

from .exact_recv import ExactReceiver
from .udp_group import SO_TIMESTAMPNS, bind_udp

if TYPE_CHECKING:
    from ksr.core.server import Server

log = logging.getLogger("ksr.udp")
MAX_DATAGRAM = 65535
BATCH = 64  # datagrams handled before yielding to other tasks
# The first datagram of each batch is read with its arrival time (SO_TIMESTAMPNS, set by
# bind_udp): how long it waited in the queue tells how far behind this process is
# (Server.rx_age, overload shedding).
_ANC_SIZE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("@qq")


def queue_age(ancdata: list[tuple[int, int, bytes]], now: Callable[[], float] = time.time) -> float:
    """Seconds a datagram waited since the kernel stamped it (0.0 without a stamp)."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return max(0.0, now() - (sec + nsec * 1e-9))
    return 0.0


class UdpReader:
    """What one wake-up of a UDP socket reads and routes, whoever woke: the socket's task or
    the serving clock."""

    def __init__(self, server: Server, sock: socket.socket, info: SocketInfo) -> None:
        self.server = server
        self.sock = sock
        self.info = info
        self.receive = server.receive
        # datagrams copied out of one buffer at their size (exact_recv.py: a 64 KiB read
        # buffer per datagram fragments the heap)
        self.rx = ExactReceiver(MAX_DATAGRAM)
        self.fd = sock.fileno()
        self.queued = array.array("i", [0])  # FIONREAD's answer: the next datagram's size, or 0
        self.full = False  # the batch before was full: datagrams keep waiting for this process

    def wake(self) -> None:
        server = self.server
        sock = self.sock
        info = self.info
        receive = self.receive
        sync = server.sync_shared  # worker processes: the others' shared-table writes
        batch = []
        age = 0.0
        try:
            data, anc, addr = self.rx.recvmsg(sock, _ANC_SIZE)
        except (BlockingIOError, InterruptedError):
            self.full = False
            return
        except OSError as err:  # e.g. ICMP port unreachable reported on the socket
            log.debug("udp recv error: %s", err)
        else:
            age = queue_age(anc)
            if len(data) < 4:  # shorter: keepalive pings (CRLF) and noise
                pass
            elif age > server.shed_age > 0:
                # old enough to be shed if this is a backlog, which only the rest of the
                # batch tells: handled with it
                batch.append((data, addr))
            else:
                # nothing read in this wake-up can be shed (the batch's age is this
                # datagram's), so it is routed before the queue is read on: at a low rate
                # the reply leaves without waiting for the read that finds the queue empty
                server.rx_age = age if self.full else 0.0
                if sync is not None:
                    sync()  # after the read: writes that came before it are applied
                try:
                    receive(data, addr[0], addr[1], info)
                except Exception:  # a bug in handling one packet must not stop the listener
                    log.exception("error handling a datagram from %s:%d", addr[0], addr[1])
                queued = self.queued
                fcntl.ioctl(self.fd, termios.FIONREAD, queued, True)
                if not queued[0]:
                    # nothing more (or an empty datagram, which the next wake-up reads)
                    self.full = False
                    return
        recvfrom_into = sock.recvfrom_into
        buf = self.rx.buf
        view = self.rx.view
        n = 1
        for n in range(2, BATCH + 1):  # noqa: B007 - n counts the datagrams read
            try:
                size, addr = recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                n -= 1
                break
            except OSError as err:
                log.debug("udp recv error: %s", err)
                continue
            if size >= 4:
                batch.append((view[:size].tobytes(), addr))
        # A few old datagrams after the process was not scheduled for a while are no
        # overload: the age counts in a backlog only (this batch or the one before full).
        was_full = self.full
        self.full = full = n == BATCH
        if not batch:
            return
        server.rx_age = age if (full or was_full) else 0.0
        if sync is not None:
            sync()  # after reading the batch: writes that came before it are applied
        handoff = server.handoff  # worker processes: messages of other workers' calls
        if handoff is not None and len(batch) > 1:
            handoff.holding = True  # what goes to other workers leaves in one datagram each
        for data, addr in batch:
            try:
                receive(data, addr[0], addr[1], info)
            except Exception:  # a bug in handling one packet must not stop the listener
                log.exception("error handling a datagram from %s:%d", addr[0], addr[1])
        if handoff is not None and handoff.holding:
            handoff.flush()


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
