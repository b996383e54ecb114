"""Moves replication frames between worker processes (the logic: ksr/core/replication.py).

Each worker listens on ``<rundir>/r<index>.sock`` and opens one connection to each sibling's
socket for its own writes, so the frames of one writer arrive in the order they were written.
The sockets are unix SOCK_SEQPACKET: message boundaries like datagrams, but a connected pair is
limited by its send buffer (4 MiB here) instead of ``net.unix.max_dgram_qlen`` (often 10
datagrams), which a burst of registrations would fill at once.

A write is sent before the method that made it returns, and then counted in a shared-memory
slot of the writer (``<rundir>/writes``, one 64-bit counter per worker): a worker about to
handle a batch compares the siblings' counts with those it last saw, and reads their sockets
only when they moved (with one sibling at once, with more after a ``poll`` for the ones that
have something). The count moves before the write's reply leaves, so a message
sent after that reply finds it moved (read-your-writes); a batch with nothing new costs no
system call.

If a sibling's buffer is full the
writer waits up to ``SEND_WAIT`` for it (the sibling reads its sockets before every batch of
SIP messages, so this only happens when it is stalled), then queues the frame in memory and
sends it when the sibling catches up (``replication:delayed``): no write is lost to a live
sibling, but read-your-writes is then not guaranteed for that write. A sibling that is down
misses the write and copies the whole state when it comes back.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import select
import socket

import trio

from .idle_wait import read_later_when_idle
from .replication import Replicator
from .stats import Stats
from .unix_peer import UnixPeer, flush

log = logging.getLogger("ksr.replication")

SEND_WAIT = 0.05  # seconds a writer waits for a sibling whose buffer is full
BUF = 4 << 20
RECV_MAX = 1 << 16
MAX_QUEUE = 500_000  # frames kept for a slow sibling before writes to it are dropped
SNAPSHOT_WAIT = 3.0  # seconds to wait for one sibling's snapshot
# seconds an idle worker lets writes gather before it applies them: one wake-up per 0.1 s
# instead of one per write (measured: ~60 -> ~17 us of the sibling's CPU per REGISTER at
# 400/s); a worker that handles messages or runs a shared-table timer applies them first
COALESCE = 0.1


class WriteCounts:
    """One 64-bit counter per worker in a file every worker maps; each worker writes only its
    own slot (an aligned 8-byte store), the others read them. Mapped for the life of the
    process (a module's stop() may still write)."""

    def __init__(self, path: str, count: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < 8 * count:
                os.ftruncate(fd, 8 * count)
            self._map = mmap.mmap(fd, 8 * count)
        finally:
            os.close(fd)
        self.slots = memoryview(self._map).cast("Q")

    def bump(self, index: int) -> None:
        self.slots[index] += 1

    def others(self, index: int) -> int:
        return sum(self.slots) - self.slots[index]


class ReplicaLink:
    def __init__(
        self, replicator: Replicator, index: int, count: int, rundir: str, stats: Stats
    ) -> None:
        self.r = replicator
        self.index = index
        self.rundir = rundir
        self.out = {
            i: UnixPeer(self.path(i), socket.SOCK_SEQPACKET) for i in range(count) if i != index
        }
        self.conns: dict[int, socket.socket] = {}  # fd -> connection from a sibling
        self.poller = select.poll()
        self.nursery: trio.Nursery | None = None
        self._answers: dict[int, trio.Event] = {}
        self.c_delayed = stats.counter("replication", "delayed")
        self.c_dropped = stats.counter("replication", "dropped")
        replicator.broadcast = self.broadcast
        replicator.reply = self.send_to
        replicator.answered = self._answered
        replicator.sync = self.drain
        replicator.activate(index, int.from_bytes(os.urandom(4), "big"))
        self.writes = WriteCounts(os.path.join(rundir, "writes"), count)
        self.slots = self.writes.slots  # read and written here without a method call
        # -n 2: the one sibling, whose slot alone holds the count drain compares
        self.sibling = 1 - index if count == 2 else -1
        self.seen = -1  # the siblings' write count at the last poll

    def path(self, index: int) -> str:
        return os.path.join(self.rundir, f"r{index}.sock")

    # -- sending ---------------------------------------------------------------------------
    def broadcast(self, data: bytes) -> None:
        for out in self.out.values():
            sock = out.sock
            if sock is not None and not out.queue:  # the usual case, without two calls more
                try:
                    sock.send(data)
                    continue
                except OSError:
                    pass  # full, or the sibling went away: _send handles both
            self._send(out, data)
        self.slots[self.index] += 1  # WriteCounts.bump, inline: once per write

    def send_to(self, worker: int, data: bytes) -> None:
        out = self.out.get(worker)
        if out is not None:
            self._send(out, data)
            self.writes.bump(self.index)

    def _send(self, out: UnixPeer, data: bytes) -> None:
        if out.queue:  # keep the order behind frames already waiting
            self._queue(out, data)
            return
        sent = out.send(data)
        if sent is False and out.sock is not None:
            p = select.poll()
            p.register(out.sock, select.POLLOUT)
            if p.poll(SEND_WAIT * 1000):
                sent = out.send(data)
        if sent is False:
            self.c_delayed.inc()
            self._queue(out, data)

    def _queue(self, out: UnixPeer, data: bytes) -> None:
        if len(out.queue) >= MAX_QUEUE:
            self.c_dropped.inc()
            return
        out.queue.append(data)
        if not out.flushing and self.nursery is not None:
            self.nursery.start_soon(flush, out, self.c_dropped.inc)

    # -- receiving -------------------------------------------------------------------------
    def drain(self) -> None:
        """Apply every frame the siblings have sent so far (called before each batch of SIP
        messages: nothing but a look at the write counts when they did not move)."""
        sibling = self.sibling  # inline _others: once per batch
        n = self.slots[sibling] if sibling >= 0 else self.writes.others(self.index)
        seen = self.seen
        if n == seen:
            return
        conns = self.conns
        if len(conns) == len(self.out):  # a sibling not yet accepted: look again next time
            self.seen = n
        if len(conns) == 1:  # -n 2: read the one sibling at once (a poll() costs ~2 us)
            # With one sibling its count is the number of frames it sent here: read that many
            # and skip the last recv, which would only fail (an exception, ~4 us). A frame
            # counted but still queued in the writer ends the read early, as an empty socket
            # does; one in the socket but not yet counted waits for its count to move.
            limit = n - seen if seen >= 0 and len(self.out) == 1 else -1
            for only in conns.values():
                self._read_all(only, limit)
            return
        for fd, _ in self.poller.poll(0):
            conn = conns.get(fd)
            if conn is not None:
                self._read_all(conn)

    def _read_all(self, conn: socket.socket, limit: int = -1) -> bool:
        """Read and apply frames until the socket is empty, or ``limit`` frames (-1: no
        limit); False once the sibling closed the connection."""
        receive = self.r.receive
        while limit != 0:
            limit -= 1
            try:
                data = conn.recv(RECV_MAX)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if not data:
                return False
            receive(data)
        return True

    def _others(self) -> int:
        sibling = self.sibling
        return self.slots[sibling] if sibling >= 0 else self.writes.others(self.index)

    def _catch_up(self, conn: socket.socket, n: int) -> bool:
        """The reader's read, the siblings' write count being ``n``: with one sibling as
        many frames as were counted since drain's last look, as drain reads them (no read
        that finds the socket empty, and drain's count kept in step); else until empty.
        False once the sibling closed the connection."""
        seen = self.seen
        if self.sibling >= 0 and seen >= 0 and len(self.conns) == 1:
            if n == seen:
                return True
            self.seen = n
            return self._read_all(conn, n - seen)
        return self._read_all(conn)

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        path = self.path(self.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by this worker's previous life
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lsock.bind(path)
        lsock.listen(64)
        lsock.setblocking(False)
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                task_status.started()
                while True:
                    await trio.lowlevel.wait_readable(lsock)
                    try:
                        conn, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    conn.setblocking(False)
                    with contextlib.suppress(OSError):
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
                    nursery.start_soon(self._reader, conn)
        finally:
            lsock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            for out in self.out.values():
                out.close()

    async def _reader(self, conn: socket.socket) -> None:
        fd = conn.fileno()
        self.conns[fd] = conn
        self.poller.register(fd, select.POLLIN)
        closed = trio.Event()

        def late() -> bool:
            # what was counted, as drain reads it (with one sibling without the read that
            # finds the socket empty); else (nothing counted: a batch's drain took it, or
            # the sibling closed) read until the socket is empty or closed
            n = self._others()
            if self._catch_up(conn, n) if n != self.seen else self._read_all(conn):
                return True
            closed.set()
            return False

        try:
            # an idle worker applies writes a moment later, many per wake-up; one that
            # handles messages applies them before each batch anyway (drain). The serving
            # clock does it where it waits (ksr/core/idle_wait.py), with no task step: this
            # task only waits for the connection's end
            with read_later_when_idle(fd, late, COALESCE) as idle:
                if idle:
                    await closed.wait()
                    return
                while True:  # another clock: this task waits, sleeps, reads
                    await trio.lowlevel.wait_readable(conn)
                    await trio.sleep(COALESCE)
                    if not late():
                        return
        finally:
            self.poller.unregister(fd)
            del self.conns[fd]
            conn.close()

    # -- start-up: copy the state of a running sibling -------------------------------------
    async def restore(self) -> None:
        """Ask the siblings in turn for their state; the first one that has a complete state
        sends it. None (all workers starting together): this worker starts empty."""
        for i, out in sorted(self.out.items()):
            event = self._answers[i] = trio.Event()
            if out.send(self.r.snapshot_request()) is not True:
                continue
            self.writes.bump(self.index)  # every frame a sibling finds is counted (drain)
            with trio.move_on_after(SNAPSHOT_WAIT):
                await event.wait()
            if self.r.restored:
                return
        if not self.r.restored:
            self.r.finish_restore()

    def _answered(self, worker: int, ok: bool) -> None:
        event = self._answers.pop(worker, None)
        if event is not None:
            event.set()
