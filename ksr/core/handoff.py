"""Hand-off between worker processes (``ksr run -n N``, docs/workers.md).

Each worker binds a unix datagram socket ``<rundir>/w<index>.sock``. Over it workers

- pass a SIP message to the worker that owns it (``ksr.sip.owner``): the raw bytes, the
  sender's address and the listener it arrived on; the owner handles it as if it had received
  it itself (handed-off messages are never handed off again);
- send bytes over a stream connection that another worker holds (a reply or an in-dialog
  request to a TCP/TLS/WS peer whose connection was accepted by that worker);
- answer RPC commands for worker 0, which merges them (statistics, dialog lists);
- broadcast small notices to the other workers (auth nonce-counts).

A worker that is down (its socket is gone or refuses) is skipped: the message is handled
where it arrived, which is what a single worker would do.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import logging
import os
import socket
import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import trio

from ksr.sip.owner import message_owner

from .context import Destination, SocketInfo
from .rpc import RpcError

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("ksr.handoff")

OP_MSG, OP_SEND, OP_RPC, OP_RPC_REPLY, OP_NOTE = 1, 2, 3, 4, 5
_HEAD = struct.Struct(">BBHQH")  # op, origin worker, source port, connection id, meta length
REMOTE_BASE = 1 << 48  # pseudo connection ids: a stream connection held by another worker
MAX_REMOTE = 20_000  # remote connections remembered per worker
CHUNK = 60_000  # RPC answers travel in pieces of this size
RECV_MAX = 1 << 18
BUF = 4 << 20
BATCH = 64
MAX_QUEUE = 20_000  # frames waiting for a busy worker before new ones are dropped
RPC_TIMEOUT = 3.0


class RemoteConns:
    """Stream connections of other workers that handed us messages: pseudo id <-> (worker,
    their connection id), and by peer address for new requests to that peer."""

    def __init__(self) -> None:
        self.by_id: OrderedDict[int, tuple[int, int, str, int]] = OrderedDict()
        self.by_peer: dict[tuple[str, int], int] = {}
        self._ids = itertools.count(REMOTE_BASE)

    def pseudo(self, worker: int, conn_id: int, host: str, port: int) -> int:
        pid = self.by_peer.get((host, port))
        if pid is not None and self.by_id.get(pid, (None, None))[:2] == (worker, conn_id):
            self.by_id.move_to_end(pid)
            return pid
        pid = next(self._ids)
        self.by_id[pid] = (worker, conn_id, host, port)
        self.by_peer[(host, port)] = pid
        while len(self.by_id) > MAX_REMOTE:
            _, (_, _, h, p) = self.by_id.popitem(last=False)
            if self.by_peer.get((h, p)) not in self.by_id:
                self.by_peer.pop((h, p), None)
        return pid


class _Peer:
    """A connected socket to one other worker's hand-off socket; connected, so that a full
    receive queue can be waited for (poll reports the peer's queue)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.queue: deque[bytes] = deque()

    def send(self, frame: bytes) -> bool | None:
        """True sent, False would block, None: nobody listens there."""
        for _ in range(2):  # a restarted worker has a new socket: connect again once
            if self.sock is None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                s.setblocking(False)
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
                try:
                    s.connect(self.path)
                except OSError:
                    s.close()
                    return None
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


class _Pending:
    def __init__(self) -> None:
        self.chunks: dict[int, bytes] = {}
        self.total = 0
        self.done = trio.Event()


class Handoff:
    def __init__(self, server: Server, index: int, count: int, rundir: str) -> None:
        self.server = server
        self.index = index
        self.count = count
        self.rundir = rundir
        self.sock: socket.socket | None = None
        self.remote = RemoteConns()
        self.peers: dict[int, _Peer] = {}
        self.notes: dict[str, Callable[[bytes], None]] = {}
        self.pending: dict[int, _Pending] = {}
        self._rpc_ids = itertools.count(1)
        # set by Server.serve once the modules have started: until then handed-off messages
        # wait in the socket (bound early, so no other worker takes this worker for dead)
        self.ready = trio.Event()
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
        path = self.path(self.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by this worker's previous life
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, opt, BUF)
        s.bind(path)
        s.setblocking(False)
        self.sock = s
        with open(self.pid_path(self.index), "w") as f:
            f.write(str(os.getpid()))
        if self.index == 0:
            self._wrap_rpc()
        try:
            task_status.started()
            await self.ready.wait()
            await self._recv_loop(s)
        finally:
            self.sock = None
            s.close()
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _recv_loop(self, s: socket.socket) -> None:
        while True:
            await trio.lowlevel.wait_readable(s)
            for _ in range(BATCH):
                try:
                    data = s.recv(RECV_MAX)
                except (BlockingIOError, InterruptedError):
                    break
                try:
                    self._dispatch(data)
                except Exception:  # one bad hand-off must not stop the loop
                    log.exception("hand-off message failed")
            await trio.lowlevel.checkpoint()

    def _send(
        self, worker: int, op: int, port: int, conn_id: int, meta: bytes, payload: bytes
    ) -> bool | None:
        """True sent (or queued in order behind earlier frames), False dropped (queue full),
        None: that worker is down."""
        if self.sock is None:
            return None
        frame = _HEAD.pack(op, self.index, port, conn_id, len(meta)) + meta + payload
        peer = self.peers.get(worker)
        if peer is None:
            peer = self.peers[worker] = _Peer(self.path(worker))
        if peer.queue:
            if len(peer.queue) >= MAX_QUEUE:
                self.c_drop.inc()
                return False
            peer.queue.append(frame)
            return True
        sent = peer.send(frame)
        if sent is False:  # the owner's queue is full (net.unix.max_dgram_qlen): wait for it
            peer.queue.append(frame)
            if self.server.nursery is not None:
                self.server.nursery.start_soon(self._flush, peer)
            return True
        return sent

    async def _flush(self, peer: _Peer) -> None:
        """Send the queued frames in order as the owner's socket takes them."""
        while peer.queue:
            if peer.sock is None:
                break
            await trio.lowlevel.wait_writable(peer.sock)
            while peer.queue:
                sent = peer.send(peer.queue[0])
                if sent is False:
                    break
                peer.queue.popleft()
                if sent is None:  # the owner died meanwhile: the rest is lost with it
                    break
        self.c_drop.inc(len(peer.queue))
        peer.queue.clear()

    def _dispatch(self, data: bytes) -> None:
        op, origin, port, conn_id, mlen = _HEAD.unpack_from(data)
        start = _HEAD.size
        meta = data[start : start + mlen].decode()
        payload = data[start + mlen :]
        if op == OP_MSG:
            self._deliver(origin, port, conn_id, meta, payload)
        elif op == OP_SEND:
            proto, host, p = meta.split(" ")
            t = self.server.transports.get(proto)
            if t is not None:
                t.send(payload, host, int(p), None, conn_id)
        elif op == OP_RPC:
            if self.server.nursery is not None:
                self.server.nursery.start_soon(self._answer_rpc, origin, int(meta), payload)
        elif op == OP_RPC_REPLY:
            self._rpc_piece(meta, payload)
        elif op == OP_NOTE:
            fn = self.notes.get(meta)
            if fn is not None:
                fn(payload)

    # -- SIP messages ----------------------------------------------------------------------------
    def relay(
        self, data: bytes, src_ip: str, src_port: int, sock: SocketInfo, conn_id: int
    ) -> bool:
        """Pass a message that arrived here to its owner. False: handle it here."""
        owner = message_owner(data, self.count)
        if owner is None or owner == self.index:
            return False
        meta = f"{sock.proto} {sock.ip} {sock.port} {src_ip}".encode()
        sent = self._send(owner, OP_MSG, src_port, conn_id, meta, data)
        if sent is None:
            self.c_down.inc()
            return False
        if sent:
            self.c_out.inc()
        return True

    def _deliver(self, origin: int, src_port: int, conn_id: int, meta: str, data: bytes) -> None:
        proto, ip, port, src_ip = meta.split(" ")
        info = self._listener(proto, ip, int(port))
        if conn_id:
            conn_id = self.remote.pseudo(origin, conn_id, src_ip, src_port)
        self.c_in.inc()
        self.server.receive_here(data, src_ip, src_port, info, conn_id)

    def _listener(self, proto: str, ip: str, port: int) -> SocketInfo:
        for s in self.server.listeners:
            if s.proto == proto and s.ip == ip and s.port == port:
                return s
        return SocketInfo(proto, ip, port)

    def send_remote(self, dest: Destination, data: bytes, conn_id: int) -> bool:
        """Send over a stream connection another worker holds. False: not such a case (or
        that worker is down): the local transport sends."""
        if conn_id >= REMOTE_BASE:
            target = self.remote.by_id.get(conn_id)
        elif conn_id == 0:
            pid = self.remote.by_peer.get((dest.host, dest.port))
            target = self.remote.by_id.get(pid) if pid is not None else None
            if target is not None and self._local_conn(dest):
                target = None
        else:
            return False
        if target is None:
            return False
        worker, cid = target[0], target[1]
        meta = f"{dest.proto} {dest.host} {dest.port}".encode()
        return bool(self._send(worker, OP_SEND, 0, cid, meta, data))

    def _local_conn(self, dest: Destination) -> bool:
        t = self.server.transports.get(dest.proto)
        table = getattr(t, "table", None)
        return table is not None and table.find(dest.proto, dest.host, dest.port) is not None

    # -- notices ---------------------------------------------------------------------------------
    def notify(self, topic: str, payload: bytes) -> None:
        """Tell every other worker (best effort: a worker that is down misses it)."""
        for i in range(self.count):
            if i != self.index:
                self._send(i, OP_NOTE, 0, 0, topic.encode(), payload)

    # -- RPC ---------------------------------------------------------------------------------------
    async def _answer_rpc(self, origin: int, rid: int, payload: bytes) -> None:
        reply = await self.server.rpc.ahandle(json.loads(payload))
        data = json.dumps(reply, default=str).encode()
        pieces = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
        for n, piece in enumerate(pieces):
            self._send(origin, OP_RPC_REPLY, 0, 0, f"{rid} {n} {len(pieces)}".encode(), piece)

    def _rpc_piece(self, meta: str, piece: bytes) -> None:
        rid, n, total = (int(x) for x in meta.split(" "))
        p = self.pending.get(rid)
        if p is None:
            return  # answered after the timeout
        p.chunks[n], p.total = piece, total
        if len(p.chunks) == total:
            p.done.set()

    async def call(self, worker: int, method: str, params: list[Any]) -> dict[str, Any] | None:
        """One RPC on another worker: its JSON-RPC reply object, or None (down, timeout)."""
        rid = next(self._rpc_ids)
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": rid}
        p = self.pending[rid] = _Pending()
        try:
            if not self._send(
                worker, OP_RPC, 0, 0, str(rid).encode(), json.dumps(request).encode()
            ):
                return None
            with trio.move_on_after(RPC_TIMEOUT):
                await p.done.wait()
            if not p.done.is_set():
                log.warning("worker %d did not answer %s", worker, method)
                return None
            reply: dict[str, Any] = json.loads(b"".join(p.chunks[i] for i in range(p.total)))
            return reply
        finally:
            del self.pending[rid]

    def _wrap_rpc(self) -> None:
        """Worker 0 (the one serving RPC) asks the others and merges their answers."""
        for name, how in CLUSTER_RPC.items():
            cmd = self.server.rpc.commands.get(name)
            if cmd is not None and not getattr(cmd.fn, "clustered", False):
                cmd.fn = self._clustered(name, cmd.fn, how)

    def _clustered(self, name: str, local: Callable[..., Any], how: str) -> Callable[..., Any]:
        async def clustered(*args: Any) -> Any:
            others = [i for i in range(self.count) if i != self.index]
            if how == "first":  # end one dialog: stop at the first worker that has it
                try:
                    return await _run(local, args)
                except RpcError as err:
                    for i in others:
                        reply = await self.call(i, name, list(args))
                        if reply is not None and "result" in reply:
                            return reply["result"]
                    raise err
            result = await _run(local, args)
            replies: list[dict[str, Any] | None] = [None] * len(others)

            async def ask(k: int, i: int) -> None:
                replies[k] = await self.call(i, name, list(args))

            async with trio.open_nursery() as nursery:
                for k, i in enumerate(others):
                    nursery.start_soon(ask, k, i)
            for reply in replies:
                if reply is not None and "result" in reply:
                    result = merge(result, reply["result"])
            return result

        clustered.clustered = True  # type: ignore[attr-defined]
        clustered.local = local  # type: ignore[attr-defined]
        clustered.__doc__ = local.__doc__
        return clustered


async def _run(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


# RPC commands worker 0 answers for all workers: "sum" merges numbers, maps and lists (see
# merge), "first" stops at the first success. The stats.* commands merge by kind themselves
# (ksr/core/stats_rpc.py).
CLUSTER_RPC = MappingProxyType(
    {
        "stats.reset_statistics": "sum",
        "tm.stats": "sum",
        "tm.list": "sum",
        "dlg.list": "sum",
        "dlg.list_ctx": "sum",
        "dlg.dlg_list": "sum",
        "dlg.briefing": "sum",
        "dlg.profile_list": "sum",
        "dlg.profile_get_size": "sum",
        "dlg.stats_active": "sum",
        "dlg.end_dlg": "first",
        "dlg.terminate_dlg": "first",
    }
)


def merge(a: Any, b: Any) -> Any:
    """Numbers add up, numeric strings too, maps merge key by key, lists are joined."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            if k not in out:
                out[k] = v
            else:
                out[k] = merge(out[k], v)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    if isinstance(a, str) and isinstance(b, str) and _is_int(a) and _is_int(b):
        return str(int(a) + int(b))
    return a


def _is_int(s: str) -> bool:
    return s.lstrip("-").isdigit()
