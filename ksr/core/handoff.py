"""Hand-off between worker processes (``ksr run -n N``, docs/workers.md): the trio shell.

Each worker binds a unix datagram socket ``<rundir>/w<index>.sock``. Over it workers

- pass a SIP message to the worker that owns it (``ksr.sip.owner``); the owner handles it as
  if it had received it itself (handed-off messages are never handed off again);
- send bytes over a stream connection that another worker holds;
- answer RPC commands for each other (ksr/core/handoff_rpc.py; ksr/core/cluster_rpc.py merges
  the answers);
- broadcast small notices to the other workers (``notify``/``notes``).

The frame format is ksr/core/handoff_codec.py; shared tables travel over their own sockets
(ksr/core/replica_link.py), which this class starts. A worker that is down (its socket is gone
or refuses) is skipped: the message is handled where it arrived.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ksr.sip.owner import message_owner
from ksr.transport.exact_recv import ExactReceiver

from . import cluster_rpc
from . import handoff_codec as codec
from .context import Destination, SocketInfo
from .handoff_conns import REMOTE_BASE, RemoteConns
from .handoff_rpc import WorkerRpc
from .replica_link import ReplicaLink
from .unix_peer import UnixPeer, flush

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("ksr.handoff")

RECV_MAX = 1 << 18
BATCH = 64
MAX_QUEUE = 20_000  # frames waiting for a busy worker before new ones are dropped


class Handoff:
    def __init__(self, server: Server, index: int, count: int, rundir: str) -> None:
        self.server = server
        self.index = index
        self.count = count
        self.rundir = rundir
        self.sock: socket.socket | None = None
        self.remote = RemoteConns()
        self.peers: dict[int, UnixPeer] = {}
        self.notes: dict[str, Callable[[bytes], None]] = {}
        # (proto, ip, port) -> the listener a handed-over message arrived on (filled once the
        # listeners are open: messages are taken from the socket only after ``ready``)
        self._listeners: dict[tuple[str, str, int], SocketInfo] = {}
        self.rpc = WorkerRpc(self._send, lambda req: server.rpc.ahandle(req, local=True))
        self.call = self.rpc.call  # one RPC on another worker (stats, dialogs, cluster RPC)
        # set by Server.serve once the modules have started: until then handed-off messages
        # wait in the socket (bound early, so no other worker takes this worker for dead)
        self.ready = trio.Event()
        # while ``holding`` (the UDP transport handles a batch of datagrams), messages for
        # other workers wait here and leave together at ``flush()``: one datagram per owner
        # for the whole batch instead of one per message
        self.holding = False
        self._held: dict[int, list[tuple[bytes, bytes, str, int, SocketInfo, int]]] = {}
        self.replicas = ReplicaLink(server.shared, index, count, rundir, server.stats)
        server.sync_shared = self.replicas.drain
        server.rpc.before = self.replicas.drain
        st = server.stats
        self.c_out = st.counter(
            "handoff", "relayed", doc="messages passed to the worker owning their call"
        )
        self.c_in = st.counter("handoff", "received", doc="messages handed over by other workers")
        self.c_down = st.counter(
            "handoff", "owner_down", doc="messages handled here: their owner was down"
        )
        self.c_drop = st.counter(
            "handoff", "dropped", doc="messages dropped: the owner's queue was full"
        )

    def path(self, index: int) -> str:
        return os.path.join(self.rundir, f"w{index}.sock")

    def pid_path(self, index: int) -> str:
        return os.path.join(self.rundir, f"w{index}.pid")

    def worker_pids(self) -> list[int]:
        """Worker pids by index (0 for a worker that is not running)."""
        out = []
        for i in range(self.count):
            try:
                with open(self.pid_path(i)) as f:
                    out.append(int(f.read().strip() or 0))
            except (OSError, ValueError):
                out.append(0)
        return out

    # -- running ---------------------------------------------------------------------------------
    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind the hand-off socket, copy the shared tables from a running sibling, then (once
        ``ready``) handle what the other workers send."""
        path = self.path(self.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by this worker's previous life
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        s.bind(path)
        s.setblocking(False)
        self.sock = s
        with open(self.pid_path(self.index), "w") as f:
            f.write(str(os.getpid()))
        cluster_rpc.install(self.server.rpc, self.index, self.count, self.call)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.replicas.serve)
                await self.replicas.restore()  # before any SIP message is handled here
                task_status.started()
                await self.ready.wait()
                await self._recv_loop(s)
        finally:
            self.sock = None
            s.close()
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _recv_loop(self, s: socket.socket) -> None:
        sync = self.replicas.drain
        recv = ExactReceiver(RECV_MAX).recv  # messages kept by transactions: exact sizes
        while True:
            await trio.lowlevel.wait_readable(s)
            batch = []
            for _ in range(BATCH):
                try:
                    batch.append(recv(s))
                except (BlockingIOError, InterruptedError):
                    break
            sync()  # shared-table writes sent before these messages are applied first
            for data in batch:
                try:
                    f = codec.decode(data)
                    if f.op == codec.OP_BATCH:
                        for inner in codec.unbatch(f.payload):
                            self._dispatch_safe(inner)
                    else:
                        self._dispatch(f)
                except Exception:  # one bad hand-off must not stop the loop
                    log.exception("hand-off message failed")
            # no checkpoint here: wait_readable always parks this task (trio does not look at
            # the socket first), so other tasks run between batches anyway

    def _dispatch_safe(self, data: bytes) -> None:
        try:
            self._dispatch(codec.decode(data))
        except Exception:
            log.exception("hand-off message failed")

    def _send(
        self, worker: int, op: int, port: int, conn_id: int, meta: str, payload: bytes
    ) -> bool | None:
        """True sent (or queued in order behind earlier frames), False dropped (queue full),
        None: that worker is down."""
        if self.sock is None:
            return None
        return self._send_frame(worker, codec.encode(op, self.index, port, conn_id, meta, payload))

    def _send_frame(self, worker: int, frame: bytes) -> bool | None:
        peer = self.peers.get(worker)
        if peer is None:
            peer = self.peers[worker] = UnixPeer(self.path(worker))
        if peer.queue:
            if len(peer.queue) >= MAX_QUEUE:
                self.c_drop.inc()
                return False
            peer.queue.append(frame)
            return True
        sent = peer.send(frame)
        if sent is False:  # the owner's queue is full (net.unix.max_dgram_qlen): wait for it
            peer.queue.append(frame)
            if not peer.flushing and self.server.nursery is not None:
                self.server.nursery.start_soon(flush, peer, self.c_drop.inc)
            return True
        return sent

    def _dispatch(self, f: codec.Frame) -> None:
        if f.op == codec.OP_MSG:
            self._deliver(f)
        elif f.op == codec.OP_SEND:
            proto, host, port = codec.parse_send_meta(f.meta)
            t = self.server.transports.get(proto)
            if t is not None:
                t.send(f.payload, host, port, None, f.conn_id)
        elif f.op == codec.OP_RPC:
            if self.server.nursery is not None:
                rid, request = codec.parse_rpc_request(f)
                self.server.nursery.start_soon(self.rpc.answer, f.origin, rid, request)
        elif f.op == codec.OP_RPC_REPLY:
            self.rpc.piece(f)
        elif f.op == codec.OP_NOTE:
            fn = self.notes.get(f.meta)
            if fn is not None:
                fn(f.payload)

    # -- SIP messages ----------------------------------------------------------------------------
    def relay(
        self, data: bytes, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int
    ) -> bool:
        """Pass a message that arrived here to its owner. False: handle it here."""
        owner = message_owner(data, self.count)
        if owner is None or owner == self.index:
            return False
        return self.relay_to(owner, data, src_ip, src_port, sock, conn_id)

    def relay_to(
        self, owner: int, data: bytes, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int
    ) -> bool:
        """Pass a message to ``owner``, another worker (``Pipeline.receive`` read it). False:
        handle it here (the owner is down)."""
        meta = codec.msg_meta(sock.proto, sock.ip, sock.port, src_ip, self.server.rx_age)
        if self.holding and self.sock is not None:
            frame = codec.encode(codec.OP_MSG, self.index, src_port, conn_id, meta, data)
            self._held.setdefault(owner, []).append((frame, data, src_ip, src_port, sock, conn_id))
            return True
        sent = self._send(owner, codec.OP_MSG, src_port, conn_id, meta, data)
        if sent is None:
            self.c_down.inc()
            return False
        if sent:
            self.c_out.inc()
        return True

    def flush(self) -> None:
        """Send the messages held during a batch, packed per owner (``OP_BATCH``), and stop
        holding. An owner that turns out to be down: its messages are handled here."""
        self.holding = False
        if not self._held:
            return
        held, self._held = self._held, {}
        for owner, items in held.items():
            done = 0
            for dgram, count in codec.batches(self.index, [item[0] for item in items]):
                if self._send_frame(owner, dgram) is None:
                    break
                done += count
            self.c_out.inc(done)
            if done < len(items):  # the owner is down: the rest is handled here
                self.c_down.inc(len(items) - done)
                for _, data, src_ip, src_port, sock, conn_id in items[done:]:
                    self.server.receive_here(data, src_ip, src_port, sock, conn_id)

    def _deliver(self, f: codec.Frame) -> None:
        proto, ip, port, src_ip, age = codec.parse_msg_meta(f.meta)
        info = self._listener(proto, ip, port)
        conn_id = f.conn_id
        if conn_id:
            conn_id = self.remote.pseudo(f.origin, conn_id, src_ip, f.port)
        self.c_in.inc()
        # overload shedding (core.shed_queue_age) judges a handed-over INVITE by how long it
        # waited where it arrived, not by whatever this worker's own UDP batch left here
        self.server.rx_age = age
        self.server.receive_here(f.payload, src_ip, f.port, info, conn_id)

    def _listener(self, proto: str, ip: str, port: int) -> SocketInfo:
        key = (proto, ip, port)
        info = self._listeners.get(key)
        if info is None:
            info = next(
                (s for s in self.server.listeners if (s.proto, s.ip, s.port) == key),
                SocketInfo(proto, ip, port),
            )
            if len(self._listeners) < 256:  # listeners are few; anything else is not kept
                self._listeners[key] = info
        return info

    def send_remote(self, dest: Destination, data: bytes, conn_id: int) -> bool:
        """Send over a stream connection another worker holds. False: not such a case (or
        that worker is down): the local transport sends."""
        if conn_id >= REMOTE_BASE:
            target = self.remote.target(conn_id)
        elif conn_id == 0:
            target = self.remote.by_address(dest.host, dest.port)
            if target is not None and self._local_conn(dest):
                target = None
        else:
            return False
        if target is None:
            return False
        meta = codec.send_meta(dest.proto, dest.host, dest.port)
        return bool(self._send(target[0], codec.OP_SEND, 0, target[1], meta, data))

    def _local_conn(self, dest: Destination) -> bool:
        t = self.server.transports.get(dest.proto)
        table = getattr(t, "table", None)
        return table is not None and table.find(dest.proto, dest.host, dest.port) is not None

    # -- notices ---------------------------------------------------------------------------------
    def notify(self, topic: str, payload: bytes) -> None:
        """Tell every other worker (best effort: a worker that is down misses it). For state
        that must survive a restart, use a shared table (ksr/core/replication.py)."""
        for i in range(self.count):
            if i != self.index:
                self._send(i, codec.OP_NOTE, 0, 0, topic, payload)
