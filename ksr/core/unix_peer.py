"""A connection to another worker process's unix socket, and the frames waiting for it.

Used by the hand-off (datagrams, ksr/core/handoff.py) and the shared tables (sequenced
packets, ksr/core/replica_link.py). Connected sockets, so that a full peer can be waited for
(poll reports the peer's queue) and frames keep their order."""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from collections.abc import Callable

import trio

BUF = 4 << 20


class UnixPeer:
    def __init__(self, path: str, kind: int = socket.SOCK_DGRAM) -> None:
        self.path = path
        self.kind = kind
        self.sock: socket.socket | None = None
        self.queue: deque[bytes] = deque()
        self.flushing = False

    def send(self, frame: bytes) -> bool | None:
        """True sent, False would block, None: nobody listens there (the worker is down)."""
        for _ in range(2):  # a restarted worker has a new socket: connect again once
            if self.sock is None:
                s = socket.socket(socket.AF_UNIX, self.kind)
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
                try:
                    s.connect(self.path)
                except OSError:
                    s.close()
                    return None
                s.setblocking(False)
                self.sock = s
            try:
                self.sock.send(frame)
                return True
            except BlockingIOError:
                return False
            except OSError:
                self.sock.close()
                self.sock = None
        return None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.queue.clear()


async def flush(peer: UnixPeer, lost: Callable[[int], None]) -> None:
    """Send the queued frames in order as the peer takes them. ``lost(n)``: frames dropped
    because the peer died meanwhile (they are lost with it)."""
    peer.flushing = True
    try:
        while peer.queue and peer.sock is not None:
            await trio.lowlevel.wait_writable(peer.sock)
            while peer.queue:
                sent = peer.send(peer.queue[0])
                if not sent:
                    break  # False: full again, wait; None: the peer is gone
                peer.queue.popleft()
    finally:
        peer.flushing = False
        if peer.queue and peer.sock is None:
            lost(len(peer.queue))
            peer.queue.clear()
