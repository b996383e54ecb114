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

A frequent write may have its own codec instead (``replicated_with``, kind ``CODED``): the
table's code packs the arguments (``struct``, text joined) and, on the receiving side,
unpacks them and builds what it stores itself. The body starts with the codec's tag (one byte,
which is also the version of its format) and the table's name; a codec that cannot pack some
arguments returns None and the write goes pickled. usrloc's binding writes go this way: about
a third of the instructions of pickling and unpickling them (bench/README.md).
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

WRITE, SNAP_REQ, SNAP_PART, SNAP_END, SNAP_NONE, CODED = 1, 2, 3, 4, 5, 6
HEAD = struct.Struct(">BBIQ")  # kind, origin worker, incarnation, sequence (or chunk number)
_AT_NAME = HEAD.size + 2  # a CODED frame's table name starts here (after tag and length)
CHUNK = 48_000  # snapshot bytes per frame (well under a unix socket's send buffer)

F = TypeVar("F", bound=Callable[..., Any])


def replicated(fn: F) -> F:
    """Mark a table method as a replicated write. Its positional arguments must be plain
    values; it runs here, then (with worker processes) in every sibling, in the same order
    as this worker's other writes."""
    return _replicating(fn, None)


def _replicating(fn: F, codec: OpCodec | None) -> F:
    """The write wrapper of ``@replicated`` (pickled) and ``@replicated_with`` (``codec``)."""
    op = fn.__name__

    @functools.wraps(fn)
    def write(self: Any, *args: Any) -> Any:
        result = fn(self, *args)
        link = self.__dict__.get("_replica")
        if link is not None:
            if codec is None:
                link[0].emit(link[1], op, args)
            else:
                link[0].emit_coded(link[1], op, args, codec)
        return result

    write.__replica_op__ = fn  # type: ignore[attr-defined]
    if codec is not None:
        write.__replica_codec__ = codec  # type: ignore[attr-defined]
    return write  # type: ignore[return-value]


class OpCodec(Protocol):
    """Packs the arguments of one replicated operation without pickle. ``tag``: one byte,
    unique among a table's codecs; change it when the format changes."""

    tag: int

    def encode(self, args: tuple[Any, ...]) -> bytes | None:
        """The packed arguments, or None when they do not fit the format (sent pickled)."""
        ...

    def apply(self, table: Any, body: bytes, offset: int) -> None:
        """Unpack ``body[offset:]`` and make the write on ``table`` (ValueError, struct.error,
        UnicodeDecodeError on a malformed body)."""
        ...


def replicated_with(codec: OpCodec) -> Callable[[F], F]:
    """``@replicated`` whose writes travel packed by ``codec`` instead of pickled."""
    return lambda fn: _replicating(fn, codec)


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


def replicated_codecs(cls: type) -> dict[int, OpCodec]:
    """The codecs of a table class's ``replicated_with`` methods, by tag."""
    out: dict[int, OpCodec] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).values():
            codec = getattr(attr, "__replica_codec__", None)
            if codec is not None:
                out[codec.tag] = codec
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
        self.codecs: dict[str, dict[int, OpCodec]] = {}
        self._coded_names: dict[tuple[str, int], bytes] = {}  # (table, tag) -> body prefix
        self._coded_in: dict[bytes, tuple[Any, OpCodec]] = {}  # body prefix -> (table, codec)
        self.factories: dict[str, Callable[[str], Any]] = {}
        self.index = 0
        self.incarnation = 0
        self.seq = 0
        self.active = False
        self.restored = True
        self.applied: dict[int, tuple[int, int]] = {}  # origin -> (incarnation, last seq)
        # writes that came before the snapshot: (kind, origin, incarnation, seq, body)
        self.held: list[tuple[int, int, int, int, bytes]] = []
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
        self.codecs[name] = replicated_codecs(type(table))
        self._coded_in.clear()
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

    def emit_coded(self, table: str, op: str, args: tuple[Any, ...], codec: OpCodec) -> None:
        """``emit`` for an operation with a codec: packed by it, or pickled when it cannot."""
        body = codec.encode(args) if self.active else None
        if body is None:
            self.emit(table, op, args)
            return
        prefix = self._coded_names.get((table, codec.tag))
        if prefix is None:
            name = table.encode()
            prefix = self._coded_names[(table, codec.tag)] = bytes((codec.tag, len(name))) + name
        self.seq += 1
        self.broadcast(HEAD.pack(CODED, self.index, self.incarnation, self.seq) + prefix + body)
        if self.outward is not None and table in self.outward_tables:
            self.outward(table, op, args)

    def emit_packed(self, table: str, tag: int, body: bytes) -> bool:
        """Send a write its table packed itself with the codec of tag ``tag`` (usrloc packs
        a binding from the Contact, not from its values); False when inactive or the table
        has other receivers (``outward``): the caller uses ``emit_coded``."""
        if not self.active or self.outward is not None:
            return False
        prefix = self._coded_names.get((table, tag))
        if prefix is None:
            name = table.encode()
            prefix = self._coded_names[(table, tag)] = bytes((tag, len(name))) + name
        self.seq += 1
        self.broadcast(HEAD.pack(CODED, self.index, self.incarnation, self.seq) + prefix + body)
        return True

    # -- frames from siblings --------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Handle one frame from a sibling (never raises: a bad frame is logged and counted)."""
        try:
            if data[0] == CODED and self.restored:  # the frequent case first, inline
                _, origin, inc, seq = HEAD.unpack_from(data)
                last = self.applied.get(origin)  # _fresh
                if last is not None and last[0] == inc and seq <= last[1]:
                    return
                self.applied[origin] = (inc, seq)
                end = _AT_NAME + data[_AT_NAME - 1]
                known = self._coded_in.get(data[HEAD.size : end])
                if known is None:
                    self._apply_coded(data, HEAD.size)
                else:
                    known[1].apply(known[0], data, end)
                return
            kind, origin, inc, seq, body = parse_frame(data)
            if kind == CODED or kind == WRITE:
                if not self.restored:
                    self.held.append((kind, origin, inc, seq, bytes(body)))
                elif self._fresh(origin, inc, seq):
                    if kind == CODED:
                        self._apply_coded(bytes(body), 0)
                    else:
                        self._apply(body)
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

    def _fresh(self, origin: int, inc: int, seq: int) -> bool:
        """False for a write already in the snapshot this worker started from."""
        last = self.applied.get(origin)
        if last is not None and last[0] == inc and seq <= last[1]:
            return False
        self.applied[origin] = (inc, seq)
        return True

    def _apply_coded(self, data: bytes, at: int) -> None:
        """The CODED body at ``data[at:]``: codec tag, length of the table's name, the name,
        then what the codec packed."""
        end = at + 2 + data[at + 1]
        prefix = data[at:end]
        known = self._coded_in.get(prefix)
        if known is None:
            name = prefix[2:].decode()
            table = self._table(name)
            if table is None:
                log.warning("replication: write to unknown table %s", name)
                return
            codec = self.codecs[name].get(prefix[0])
            if codec is None:
                raise ValueError(f"replication: no codec {prefix[0]} for table {name}")
            known = self._coded_in[prefix] = (table, codec)
        known[1].apply(known[0], data, end)

    def _apply(self, body: bytes | memoryview) -> None:
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
        for kind, origin, inc, seq, body in held:
            try:
                if self._fresh(origin, inc, seq):
                    if kind == CODED:
                        self._apply_coded(body, 0)
                    else:
                        self._apply(body)
            except Exception:
                self.errors += 1
                log.exception("replication: held write failed")
