"""What one wake-up of a UDP socket reads and routes (compiled: every datagram passes here).

The first datagram of a wake-up is routed before the rest is read, unless it is old enough to
be shed: at a low rate its reply leaves before the read that finds the queue empty (a raised
BlockingIOError, ~13 us at 100 requests/s: bench/README.md). Whether more is queued is then
asked with FIONREAD: when nothing is, as at a low rate, the read that would raise
BlockingIOError (~7,000 instructions with the exception) is not made (~1,600). The rest is
read in batches (measured here: ~2.6x the packet rate of one await per packet).
"""

from __future__ import annotations

import array
import fcntl
import logging
import socket
import struct
import termios
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ksr.core.context import SocketInfo

from .udp_group import SO_TIMESTAMPNS

if TYPE_CHECKING:
    from ksr.core.server import Server

log = logging.getLogger("ksr.udp")
MAX_DATAGRAM: Final = 65535
BATCH: Final = 64  # datagrams handled before yielding to other tasks
# The first datagram of each batch is read with its arrival time (SO_TIMESTAMPNS, set by
# bind_udp): how long it waited in the queue tells how far behind this process is
# (Server.rx_age, overload shedding).
_ANC_SIZE: Final = socket.CMSG_SPACE(16)
_TIMESPEC: Final = struct.Struct("@qq")


_SOL_SOCKET: Final = socket.SOL_SOCKET
_STAMP: Final = SO_TIMESTAMPNS


def queue_age(ancdata: list[tuple[int, int, bytes]], now: Callable[[], float] = time.time) -> float:
    """Seconds a datagram waited since the kernel stamped it (0.0 without a stamp)."""
    # typed locals and constants: native arithmetic, no module attribute read per datagram
    for level, kind, data in ancdata:
        if kind == _STAMP and level == _SOL_SOCKET and len(data) >= 16:
            sec: int
            nsec: int
            sec, nsec = _TIMESPEC.unpack_from(data)
            age = now() - (sec + nsec * 1e-9)
            return age if age > 0.0 else 0.0
    return 0.0


class UdpReader:
    """What one wake-up of a UDP socket reads and routes, whoever woke: the socket's task or
    the serving clock."""

    def __init__(self, server: Server, sock: socket.socket, info: SocketInfo) -> None:
        self.server: Any = server
        self.sock = sock
        self.info = info
        self.receive: Callable[[bytes, str, int, SocketInfo], None] = server.receive
        # datagrams copied out of one buffer at their size: a 64 KiB read buffer per datagram
        # fragments the heap (exact_recv.py)
        self.buf = bytearray(MAX_DATAGRAM)
        self.view = memoryview(self.buf)
        self.fd = sock.fileno()
        self.queued = array.array("i", [0])  # FIONREAD's answer: the next datagram's size, or 0
        self.full = False  # the batch before was full: datagrams keep waiting for this process

    def wake(self) -> None:
        server = self.server
        sock = self.sock
        info = self.info
        receive = self.receive
        sync = server.sync_shared  # worker processes: the others' shared-table writes
        batch: list[tuple[bytes, Any]] = []
        age = 0.0
        asked = False  # FIONREAD said another datagram waits
        try:
            size, anc, _, addr = sock.recvmsg_into((self.buf,), _ANC_SIZE)
        except (BlockingIOError, InterruptedError):
            self.full = False
            return
        except OSError as err:  # e.g. ICMP port unreachable reported on the socket
            log.debug("udp recv error: %s", err)
        else:
            data = self.view[:size].tobytes()
            age = queue_age(anc)
            if size < 4:  # shorter: keepalive pings (CRLF) and noise
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
                asked = True
        recvfrom_into = sock.recvfrom_into
        buf = self.buf
        view = self.view
        fd = self.fd
        queued = self.queued
        # FIONREAD before each read after the first: a read that finds the queue empty
        # raises BlockingIOError (~7,000 instructions with the exception, ~2.5 per anchor
        # call: a callee's 180 and 200 arrive together), FIONREAD answers 0 for ~1,000
        n = 1
        while n < BATCH:
            if not asked:
                fcntl.ioctl(fd, termios.FIONREAD, queued, True)
                if not queued[0]:
                    break  # empty (or an empty datagram next: the next wake-up reads it)
            asked = False
            try:
                size, addr = recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                log.debug("udp recv error: %s", err)
                n += 1
                continue
            n += 1
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
