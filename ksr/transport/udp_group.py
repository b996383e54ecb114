"""UDP sockets: how ksr binds one (``bind_udp``), and the groups of ``ksr run -n N``.

With worker processes the supervisor (ksr/workers.py) binds one socket per worker for each
UDP listener, in worker order, with SO_REUSEPORT, and keeps them open for the whole run: worker
i always reads socket i of each group, a restarted worker gets the same socket back (an
inherited file descriptor), and the socket's index in the kernel's SO_REUSEPORT group is the
worker's index, which the steering program (ksr/transport/steer.py) relies on. The supervisor
never reads them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket

from .steer import WINDOW, attach, program

log = logging.getLogger("ksr.workers")

# Linux: the kernel's arrival time of a datagram (SO_TIMESTAMPNS; Python's socket module has no
# name for it), read by the UDP transport for overload shedding
SO_TIMESTAMPNS = 35


def bind_udp(ip: str, port: int, reuse_port: bool) -> socket.socket:
    """A non-blocking UDP socket bound to ip:port, with ksr's buffers and arrival times."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    try:
        s.bind((ip, port))
    except OSError as err:
        s.close()
        raise OSError(err.errno, f"cannot listen on udp:{ip}:{port}: {err.strerror}") from None
    with contextlib.suppress(OSError):  # no arrival times here: nothing is shed
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setblocking(False)
    return s


class UdpGroups:
    def __init__(self, addresses: list[tuple[str, int]], workers: int) -> None:
        self.workers = workers
        self.groups: list[tuple[str, int, list[socket.socket]]] = []
        self.live: frozenset[int] = frozenset()
        self.steering = workers > 1
        try:
            for ip, port in addresses:
                socks: list[socket.socket] = []
                self.groups.append((ip, port, socks))
                for _ in range(workers):
                    socks.append(bind_udp(ip, port, reuse_port=True))
        except OSError:
            self.close()
            raise

    def fds(self, index: int) -> list[tuple[int, str, int]]:
        """(fd, ip, port) of worker ``index``'s sockets."""
        return [(socks[index].fileno(), ip, port) for ip, port, socks in self.groups]

    def steer(self, live: set[int]) -> None:
        """Send each datagram to its owner among the ``live`` workers (no change while none is
        live: nothing reads then anyway). A kernel that refuses: the sender's hash, as before."""
        now = frozenset(live)
        if not self.steering or not now or now == self.live:
            return
        for ip, port, socks in self.groups:
            if not self._attach(socks[0], now):
                log.warning("udp:%s:%d: no steering by Call-ID: messages are handed over", ip, port)
                self.steering = False
                return
            log.info("udp:%s:%d: datagrams steered by Call-ID to workers %s", ip, port, sorted(now))
        self.live = now

    def _attach(self, sock: socket.socket, live: frozenset[int]) -> bool:
        """The kernel charges the program to the socket's option memory (net.core.optmem_max,
        20 KiB before Linux 6.9): if it is too small, search fewer bytes."""
        window = WINDOW
        while window >= 128:
            try:
                attach(sock, program(self.workers, live, window))
                return True
            except OSError as err:
                if err.errno != errno.ENOMEM:
                    log.warning("steering program refused: %s", err)
                    return False
            window //= 2
        return False

    def close(self) -> None:
        for _, _, socks in self.groups:
            for s in socks:
                s.close()
