"""One state for every worker process (``ksr run -n N``): replicated tables, sans-IO.

Every worker keeps a full copy of each shared table (usrloc bindings, htables, pike counters,
auth nonce-counts, the permissions address list) and reads it at local-memory speed. A table
marks the methods that change it with ``@replicated``; calling one changes the local copy and
hands the call (its name and plain arguments) to ``Replicator.emit``, which encodes it and
sends it to every sibling *before returning*, so before the caller's SIP reply goes out. A
sibling applies pending frames before it handles its next batch of messages (``ReplicaLink``,
``Server.sync_shared``), which is what makes writes readable in every worker once the reply has
left. A (re)started worker copies the state of a running sibling (``snapshot``/``restore``).

This file holds no sockets and no clock: the I/O shell is ``ksr/core/replica_link.py``.

Frames: a fixed head (kind, origin worker, origin incarnation, sequence number) and a pickled
body restricted to plain values (str, int, float, bytes, bool, None, tuple, list, dict): the
unpickler refuses every class, so a frame can never build objects or run code.
"""

from __future__ import annotations

import functools
import io
import logging
import pickle
import struct
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

log = logging.getLogger("ksr.replication")

WRITE, SNAP_REQ, SNAP_PART, SNAP_END, SNAP_NONE = 1, 2, 3, 4, 5
HEAD = struct.Struct(">BBIQ")  # kind, origin worker, incarnation, sequence (or chunk number)
CHUNK = 48_000  # snapshot bytes per frame (well under a unix socket's send buffer)

F = TypeVar("F", bound=Callable[..., Any])


def replicated(fn: F) -> F:
    """Mark a table method as a replicated write. Its positional arguments must be plain
    values; it runs here, then (with worker processes) in every sibling, in the same order
    as this worker's other writes."""
    op = fn.__name__

    @functools.wraps(fn)
    def write(self: Any, *args: Any) -> Any:
        result = fn(self, *args)
        link = self.__dict__.get("_replica")
        if link is not None:
            link[0].emit(link[1], op, args)
        return result

    write.__replica_op__ = fn  # type: ignore[attr-defined]
    return write  # type: ignore[return-value]


class SharedTable(Protocol):
    """What a table offers to be shared: ``@replicated`` write methods, and a copy of its
    whole state as plain values for a worker that (re)starts."""

    def replica_snapshot(self) -> Any: ...

    def replica_restore(self, state: Any) -> None: ...


def replicated_ops(cls: type) -> dict[str, Callable[..., Any]]:
    """The ``@replicated`` methods of a table class: name -> the undecorated function."""
    out: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            fn = getattr(attr, "__replica_op__", None)
            if fn is not None:
                out[name] = fn
    return out


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"replication frames carry plain values only ({name})")


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes | memoryview) -> Any:
    return _PlainUnpickler(io.BytesIO(data)).load()


def frame(kind: int, origin: int, incarnation: int, seq: int, body: bytes = b"") -> bytes:
    return HEAD.pack(kind, origin, incarnation, seq) + body


def parse_frame(data: bytes) -> tuple[int, int, int, int, memoryview]:
    """(kind, origin, incarnation, seq, body); ValueError if too short."""
    if len(data) < HEAD.size:
        raise ValueError("short replication frame")
    kind, origin, inc, seq = HEAD.unpack_from(data)
    return kind, origin, inc, seq, memoryview(data)[HEAD.size :]


class Replicator:
    """The tables of one worker and the bookkeeping of what it applied from whom.

    ``broadcast(frame)`` sends to every sibling; ``reply(worker, frame)`` to one. Until
    ``restored`` (a snapshot arrived, or no sibling had one), writes from siblings are kept
    and applied after the snapshot, minus those the snapshot already holds."""

    def __init__(self) -> None:
        self.tables: dict[str, Any] = {}
        self.ops: dict[str, dict[str, Callable[..., Any]]] = {}
        self.factories: dict[str, Callable[[str], Any]] = {}
        self.index = 0
        self.incarnation = 0
        self.seq = 0
        self.active = False
        self.restored = True
        self.applied: dict[int, tuple[int, int]] = {}  # origin -> (incarnation, last seq)
        self.held: list[tuple[int, int, int, bytes]] = []  # writes that came before the snapshot
        self.parts: dict[int, list[bytes]] = {}  # snapshot chunks being received, by sender
        self.broadcast: Callable[[bytes], None] = lambda data: None
        self.reply: Callable[[int, bytes], None] = lambda worker, data: None
        # a sibling answered a snapshot request: (worker, True: state copied / False: none)
        self.answered: Callable[[int, bool], None] = lambda worker, ok: None
        # apply what the siblings sent so far (timers that change shared tables call it first)
        self.sync: Callable[[], None] = lambda: None
        self.errors = 0
        # tables shared with other NODES too (ksr/core/cluster.py): their writes also go to
        # ``outward(table, op, args)``
        self.outward: Callable[[str, str, tuple[Any, ...]], None] | None = None
        self.outward_tables: set[str] = set()

    # -- tables ----------------------------------------------------------------------------
    def register(self, name: str, table: Any) -> None:
        """Share ``table`` under ``name`` (the same in every worker)."""
        self.tables[name] = table
        self.ops[name] = replicated_ops(type(table))
        if self.active:
            table.__dict__["_replica"] = (self, name)

    def export(self, name: str) -> None:
        """Also hand the writes of the registered table ``name`` to ``outward``."""
        self.outward_tables.add(name)
        self.tables[name].__dict__["_replica"] = (self, name)

    def run_op(self, name: str, op: str, args: tuple[Any, ...]) -> Any:
        """Run a write another node made on this worker's copy, without sending it on (each
        worker of a node receives the other nodes' writes itself). KeyError: unknown table or
        operation."""
        return self.ops[name][op](self.tables[name], *args)

    def register_factory(self, prefix: str, make: Callable[[str], Any]) -> None:
        """Tables created on first use: ``make(name)`` creates (and registers) the table a
        sibling writes to before this worker used it, e.g. a second usrloc table."""
        self.factories[prefix] = make

    def _table(self, name: str) -> Any:
        t = self.tables.get(name)
        if t is None:
            for prefix, make in self.factories.items():
                if name.startswith(prefix):
                    make(name[len(prefix) :])
                    return self.tables.get(name)
        return t

    @property
    def leader(self) -> bool:
        """True in the one worker that runs the timers changing shared tables (expiry):
        worker 0, or the only process. Their changes replicate like any write."""
        return not self.active or self.index == 0

    def activate(self, index: int, incarnation: int) -> None:
        """Worker processes: from now on writes are sent to the siblings."""
        self.index, self.incarnation, self.active = index, incarnation, True
        self.restored = False
        for name, t in self.tables.items():
            t.__dict__["_replica"] = (self, name)

    # -- writes ----------------------------------------------------------------------------
    def emit(self, table: str, op: str, args: tuple[Any, ...]) -> None:
        if self.active:
            self.seq += 1
            self.broadcast(
                frame(WRITE, self.index, self.incarnation, self.seq, dumps((table, op, args)))
            )
        if self.outward is not None and table in self.outward_tables:
            self.outward(table, op, args)

    # -- frames from siblings --------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Handle one frame from a sibling (never raises: a bad frame is logged and counted)."""
        try:
            kind, origin, inc, seq, body = parse_frame(data)
            if kind == WRITE:
                if self.restored:
                    self._apply(origin, inc, seq, body)
                else:
                    self.held.append((origin, inc, seq, bytes(body)))
            elif kind == SNAP_REQ:
                self._answer_snapshot(origin)
            elif kind == SNAP_PART:
                self.parts.setdefault(origin, []).append(bytes(body))
            elif kind == SNAP_END:
                self._restore(origin)
            elif kind == SNAP_NONE:
                self.parts.pop(origin, None)
                self.answered(origin, False)
        except Exception:
            self.errors += 1
            log.exception("replication: frame from a sibling failed")

    def _apply(self, origin: int, inc: int, seq: int, body: bytes | memoryview) -> None:
        last = self.applied.get(origin)
        if last is not None and last[0] == inc and seq <= last[1]:
            return  # already in the snapshot this worker started from
        self.applied[origin] = (inc, seq)
        name, op, args = loads(body)
        table = self._table(name)
        if table is None:
            log.warning("replication: write to unknown table %s", name)
            return
        fn = self.ops[name].get(op)
        if fn is None:
            log.warning("replication: unknown operation %s.%s", name, op)
            return
        fn(table, *args)

    # -- snapshots -------------------------------------------------------------------------
    def snapshot_request(self) -> bytes:
        return frame(SNAP_REQ, self.index, self.incarnation, 0)

    def _answer_snapshot(self, worker: int) -> None:
        if not self.restored:  # this worker's own state is not complete yet
            self.reply(worker, frame(SNAP_NONE, self.index, self.incarnation, 0))
            return
        for piece in self.snapshot_frames():
            self.reply(worker, piece)

    def snapshot_frames(self) -> list[bytes]:
        vector = dict(self.applied)
        vector[self.index] = (self.incarnation, self.seq)
        state = {name: t.replica_snapshot() for name, t in self.tables.items()}
        data = dumps((vector, state))
        pieces = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        out = [frame(SNAP_PART, self.index, self.incarnation, n, p) for n, p in enumerate(pieces)]
        out.append(frame(SNAP_END, self.index, self.incarnation, len(pieces)))
        return out

    def _restore(self, origin: int) -> None:
        data = b"".join(self.parts.pop(origin, []))
        if self.restored:
            return
        vector, state = loads(data)
        for name, value in state.items():
            table = self._table(name)
            if table is not None:
                table.replica_restore(value)
        self.applied = {int(k): (int(v[0]), int(v[1])) for k, v in vector.items()}
        self.finish_restore()
        log.info("replication: state copied from worker %d (%d tables)", origin, len(state))
        self.answered(origin, True)

    def finish_restore(self) -> None:
        """Apply the writes held while waiting for a snapshot (or when none came)."""
        self.restored = True
        held, self.held = self.held, []
        for origin, inc, seq, body in held:
            try:
                self._apply(origin, inc, seq, body)
            except Exception:
                self.errors += 1
                log.exception("replication: held write failed")
