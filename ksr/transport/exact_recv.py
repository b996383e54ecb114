"""Receiving datagrams as bytes of their own size.

``sock.recvfrom(65535)`` allocates a 64 KiB buffer for every datagram and shrinks it to the
datagram's size. A message that is kept (a transaction holds its request for retransmissions
and replies) then pins a small block in the middle of what was a 64 KiB hole, and the next
64 KiB allocation no longer fits there: the C heap grows while the memory in use stays the
same. Measured here (bench/README.md, "Memory under a steady load"): a worker's heap grew by
~0.5 MiB a minute at 100 calls/s, three quarters of it free but unusable. Reading into one
buffer per socket and copying out exactly the datagram costs ~2,000 instructions more per
datagram and keeps the heap flat.
"""

from __future__ import annotations

import socket


class ExactReceiver:
    """One reusable buffer; each call returns a fresh ``bytes`` of the message's length."""

    __slots__ = ("buf", "view")

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)

    def recvfrom(self, sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
        n, addr = sock.recvfrom_into(self.buf)
        return self.view[:n].tobytes(), addr

    def recvmsg(
        self, sock: socket.socket, ancsize: int
    ) -> tuple[bytes, list[tuple[int, int, bytes]], tuple[str, int]]:
        n, anc, _, addr = sock.recvmsg_into((self.buf,), ancsize)
        return self.view[:n].tobytes(), anc, addr

    def recv(self, sock: socket.socket) -> bytes:
        n = sock.recv_into(self.buf)
        return self.view[:n].tobytes()
