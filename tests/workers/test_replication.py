"""Replicated tables (ksr/core/replication.py) without sockets: replicators joined by in-memory
"wires" that deliver frames in order, as the unix sockets between workers do."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from ksr.core.replication import SNAP_REQ, Replicator, frame, loads, replicated


class Counter:
    """A shared table: named counters with an increment (not idempotent) and a set."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    @replicated
    def add(self, key: str, n: int) -> None:
        self.values[key] = self.values.get(key, 0) + n

    @replicated
    def put(self, key: str, n: int) -> None:
        self.values[key] = n

    def replica_snapshot(self) -> Any:
        return dict(self.values)

    def replica_restore(self, state: Any) -> None:
        self.values = dict(state)


class Cluster:
    """n workers; frames wait on per-(sender, receiver) wires until delivered."""

    def __init__(self, n: int) -> None:
        self.reps = [Replicator() for _ in range(n)]
        self.tables = [Counter() for _ in range(n)]
        self.wires: dict[tuple[int, int], list[bytes]] = {}
        self.up = [True] * n
        for i, (r, t) in enumerate(zip(self.reps, self.tables, strict=True)):
            r.register("counter", t)
            self.start(i)

    def start(self, i: int) -> None:
        r = self.reps[i]
        r.broadcast = lambda data, i=i: self._send_all(i, data)  # type: ignore[misc]
        r.reply = lambda to, data, i=i: self._send(i, to, data)  # type: ignore[misc]
        r.activate(i, incarnation=100 + i + len(self.wires))

    def _send_all(self, i: int, data: bytes) -> None:
        for j in range(len(self.reps)):
            if j != i:
                self._send(i, j, data)

    def _send(self, i: int, j: int, data: bytes) -> None:
        if self.up[j]:
            self.wires.setdefault((i, j), []).append(data)

    def deliver(self, to: int | None = None) -> None:
        for (_i, j), frames in list(self.wires.items()):
            if to is None or j == to:
                while frames:
                    self.reps[j].receive(frames.pop(0))

    def restart(self, i: int) -> None:
        """Worker i dies (its wires are lost) and comes back empty."""
        for key in [k for k in self.wires if i in k]:
            del self.wires[key]
        self.reps[i] = Replicator()
        self.tables[i] = Counter()
        self.reps[i].register("counter", self.tables[i])
        self.start(i)


def test_a_write_reaches_every_sibling_in_order() -> None:
    c = Cluster(3)
    for r in c.reps:
        r.finish_restore()
    c.tables[0].put("a", 5)
    c.tables[0].add("a", 2)
    assert c.tables[2].values == {}  # nothing applied until the frames are read
    c.deliver()
    c.tables[1].add("a", 1)
    c.tables[2].add("a", 1)  # increments commute: concurrent ones add up everywhere
    c.deliver()
    assert [t.values for t in c.tables] == [{"a": 9}] * 3


def test_writes_before_the_snapshot_are_held_and_not_applied_twice() -> None:
    c = Cluster(3)
    for r in c.reps:
        r.finish_restore()
    c.tables[0].add("x", 1)
    c.tables[1].add("x", 10)
    c.deliver()
    c.restart(2)
    assert c.reps[2].restored is False
    c.tables[1].add("x", 100)  # reaches worker 2 before its snapshot, and worker 0
    c.deliver(to=0)  # worker 0 has applied it when it makes the snapshot
    c.tables[0].add("x", 1000)  # worker 0's own write: in the snapshot too
    c.reps[0].receive(c.reps[2].snapshot_request())
    c.tables[1].add("x", 10000)  # after the snapshot: applied on top of it
    c.deliver(to=0)
    c.deliver(to=2)
    assert c.reps[2].restored
    c.deliver()
    assert [t.values["x"] for t in c.tables] == [11111] * 3


def test_a_sibling_that_is_not_restored_itself_gives_no_snapshot() -> None:
    c = Cluster(2)
    answers: list[tuple[int, bool]] = []
    c.reps[1].answered = lambda w, ok: answers.append((w, ok))
    c.reps[0].receive(frame(SNAP_REQ, 1, 7, 0))
    c.deliver()
    assert answers == [(0, False)]
    assert not c.reps[1].restored
    c.reps[1].finish_restore()
    assert c.reps[1].restored


def test_tables_made_on_first_use_are_created_for_a_sibling_write() -> None:
    a, b = Replicator(), Replicator()
    a.broadcast = b.receive
    a.activate(0, 1)
    b.activate(1, 2)
    b.finish_restore()
    made: dict[str, Counter] = {}

    def make(name: str) -> None:
        made[name] = Counter()
        b.register("counter:" + name, made[name])

    b.register_factory("counter:", make)
    t = Counter()
    a.register("counter:second", t)
    t.put("k", 3)
    assert made["second"].values == {"k": 3}


def test_frames_carry_plain_values_only() -> None:
    evil = pickle.dumps(("counter", "put", (Counter(), 1)))
    with pytest.raises(pickle.UnpicklingError):
        loads(evil)
    r = Replicator()
    r.finish_restore()
    r.receive(b"\x01")  # a short frame: logged and counted, not raised
    r.receive(frame(1, 0, 1, 1, evil))
    assert r.errors == 2


def test_without_worker_processes_nothing_is_sent() -> None:
    r = Replicator()
    sent: list[bytes] = []
    r.broadcast = sent.append
    t = Counter()
    r.register("counter", t)
    t.add("a", 1)
    assert sent == []
    assert t.values == {"a": 1}


def _domains() -> tuple[Replicator, Replicator, Any, Any, list[bytes]]:
    from ksr.modules.usrloc.domain import Domain

    a, b = Replicator(), Replicator()
    frames: list[bytes] = []
    a.broadcast = frames.append
    a.activate(0, 1)
    b.activate(1, 2)
    b.finish_restore()
    da, db = Domain("location", 0, None), Domain("location", 0, None)
    a.register("location", da)
    b.register("location", db)
    return a, b, da, db, frames


def test_a_binding_travels_packed_and_arrives_equal() -> None:
    from ksr.core.replication import CODED
    from ksr.modules.usrloc.contact import Contact

    _, b, da, db, frames = _domains()
    c = Contact(
        "alice@ex",
        "sip:alice@192.0.2.1:5062",
        1e9 + 0.5,
        q=500,
        callid="c-1",
        cseq=7,
        flags=1,
        cflags=2,
        user_agent="Zoë's phone ☎",
        received="sip:x",
        socket="udp:10.0.0.1:5060",
        path="<sip:p;lr>",
        ruid="uloc-1",
        instance="<urn:x>",
        reg_id=3,
        methods=0xFFFFFFFF,
        server_id=9,
        conn_id=-1,
        keepalive=1,
        last_modified=1e9,
    )
    da.put(c)
    assert [f[0] for f in frames] == [CODED]
    b.receive(frames[0])
    assert db.read("alice@ex") == [c]
    assert b.errors == 0


def test_a_binding_packs_the_same_from_the_contact_as_from_its_values() -> None:
    """usrloc packs a binding it saves from the Contact itself (pack_contact), the codec's
    fallback from its values (pack_values): one format, one answer for what does not fit."""
    from ksr.modules.usrloc.contact import Contact, pack_contact, pack_values

    cases = [
        Contact("a@x", "sip:a", 1e9 + 0.25, q=100, callid="c", cseq=3, user_agent="Zoë ☎"),
        Contact("b@x", "sip:b", 0.0, ruid="r", reg_id=2, conn_id=-1, keepalive=1),
        Contact("c@x", "sip:c\x00", 0.0),  # a NUL: does not fit
        Contact("d@x", "sip:d", 0.0, cseq=1 << 70),  # beyond 64 bits: does not fit
        Contact("e@x", "sip:\udcff", 0.0),  # a lone surrogate: does not fit
    ]
    for c in cases:
        assert pack_contact(c) == pack_values(c.values())
    assert [pack_contact(c) is None for c in cases] == [False, False, True, True, True]


def test_a_binding_that_does_not_fit_the_codec_goes_pickled() -> None:
    from ksr.core.replication import WRITE
    from ksr.modules.usrloc.contact import Contact

    _, b, da, db, frames = _domains()
    nul = Contact("bob", "sip:b\x00", 0.0, ruid="r1")  # a NUL would split the texts
    big = Contact("bob", "sip:b", 0.0, ruid="r2", cseq=1 << 70)  # beyond 64 bits
    da.put(nul)
    da.put(big)
    assert [f[0] for f in frames] == [WRITE, WRITE]
    for f in frames:
        b.receive(f)
    assert sorted(db.read("bob"), key=lambda c: c.ruid) == [nul, big]


def test_a_malformed_packed_binding_is_counted_not_raised() -> None:
    from ksr.modules.usrloc.contact import Contact

    _, b, da, db, frames = _domains()
    for n in range(3):
        da.put(Contact("carol", "sip:c", 0.0, ruid=f"r{n}"))
    b.receive(frames[0][:-3] + b"\xff")  # not UTF-8
    b.receive(frames[1][:40])  # numbers cut short
    b.receive(frames[2].replace(b"carol\x00", b"carol"))  # a text missing
    assert b.errors == 3
    assert db.read("carol") == []


def test_packed_writes_before_the_snapshot_are_held_then_applied() -> None:
    from ksr.modules.usrloc.contact import Contact

    a, b, da, db, frames = _domains()
    b.restored = False
    da.put(Contact("dave", "sip:d", 0.0, ruid="r"))
    b.receive(frames[0])
    assert db.read("dave") == []
    b.finish_restore()
    assert [c.contact for c in db.read("dave")] == ["sip:d"]
