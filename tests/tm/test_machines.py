"""The four transaction machines over a terrible fake network, with a fake clock.

A seeded RNG drops, duplicates and delays (so reorders) every packet. 100 transactions of each
kind must still complete exactly as RFC 3261 says: the client TU gets the final reply exactly
once (or, for 2xx to INVITE, at least once), the server sees the ACK of its negative reply,
and every machine ends in Terminated with no timer left.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from ksr.sip.transaction import (
    DELIVER,
    ICT,
    IST,
    NICT,
    NIST,
    SEND,
    SEND_ACK,
    START,
    STOP,
    TERMINATED,
    Machine,
    TimerConfig,
    reply_event,
    send_event,
)


class Clock:
    """Virtual time: callbacks run in deadline order; cancelled ones are skipped."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, list[Callable[[], None] | None]]] = []
        self._seq = itertools.count()

    def call_later(self, delay: float, fn: Callable[[], None]) -> list[Callable[[], None] | None]:
        cell: list[Callable[[], None] | None] = [fn]
        heapq.heappush(self._heap, (self.now + delay, next(self._seq), cell))
        return cell

    def run(self, until: float) -> None:
        while self._heap and self._heap[0][0] <= until:
            t, _, cell = heapq.heappop(self._heap)
            self.now = t
            if cell[0] is not None:
                cell[0]()
        self.now = until


class TerribleNet:
    """Drops 25%, duplicates 15%, delays 0-400 ms (so reorders) — reproducibly."""

    def __init__(self, clock: Clock, seed: int) -> None:
        self.clock = clock
        self.rng = random.Random(seed)
        self.sent = 0

    def send(self, deliver: Callable[[], None]) -> None:
        self.sent += 1
        if self.rng.random() < 0.25:
            return
        copies = 2 if self.rng.random() < 0.15 else 1
        for _ in range(copies):
            self.clock.call_later(self.rng.uniform(0, 0.4), deliver)


@dataclass
class Side:
    """One end of a transaction: its machine and the timers it runs."""

    machine: Machine
    clock: Clock
    on_send: Callable[[], None]
    on_ack: Callable[[], None] = lambda: None
    delivered: list[str] = field(default_factory=list)
    timers: dict[str, list[Callable[[], None] | None]] = field(default_factory=dict)

    def feed(self, event: str) -> None:
        for op, arg in self.machine.handle(event):
            if op in (SEND,):
                self.on_send()
            elif op == SEND_ACK:
                self.on_ack()
            elif op == START:
                self._stop(arg)
                self.timers[arg] = self.clock.call_later(
                    self.machine.interval(arg), lambda a=arg: self._fire(a)
                )
            elif op == STOP:
                self._stop(arg)
            elif op == DELIVER:
                self.delivered.append(arg)
            elif op == TERMINATED:
                for name in list(self.timers):
                    self._stop(name)

    def _stop(self, name: str) -> None:
        cell = self.timers.pop(name, None)
        if cell is not None:
            cell[0] = None

    def _fire(self, name: str) -> None:
        self.timers.pop(name, None)
        self.feed("timer_" + name)


def run_transaction(
    clock: Clock, net: TerribleNet, invite: bool, final: int, timers: TimerConfig
) -> tuple[Side, Side, dict[str, int]]:
    """A client and a server machine joined by the network; the server TU answers after a
    while (180 first for INVITE). Returns both sides and what the TUs saw."""
    seen = {"finals": 0, "acks": 0, "requests": 0}
    client: Side
    server: Side | None = None
    state = {"reply": 0}

    def to_server_request() -> None:
        nonlocal server
        if server is None:
            server = Side(
                Machine(IST if invite else NIST, False, timers), clock, on_send=send_reply
            )
            seen["requests"] += 1
            if invite:
                clock.call_later(0.2, lambda: tu_reply(180))
            clock.call_later(1.0, lambda: tu_reply(final))
        else:
            server.feed("request")

    def tu_reply(code: int) -> None:
        assert server is not None
        state["reply"] = code
        server.feed(send_event(code))
        if invite and 200 <= code < 300:
            # RFC 3261 §13.3.1.4: the UAS core (not the transaction) retransmits a 2xx until the ACK.
            retransmit_2xx(timers.t1)

    def retransmit_2xx(interval: float) -> None:
        assert server is not None
        if seen["acks"] or server.machine.done:
            return
        server.feed("send_2xx")
        clock.call_later(interval, lambda: retransmit_2xx(min(interval * 2, timers.t2)))

    def send_reply() -> None:
        code = state["reply"]
        net.send(lambda: to_client_reply(code))

    def to_client_reply(code: int) -> None:
        before = len(client.delivered)
        client.feed(reply_event(code))
        if code >= 200 and len(client.delivered) > before:
            seen["finals"] += 1
            if invite and code < 300:
                net.send(to_server_e2e_ack)  # the UAC core ACKs every 2xx it gets

    def to_server_ack() -> None:
        assert server is not None
        before = server.machine.state
        server.feed("ack")
        if before == "completed" and server.machine.state == "confirmed":
            seen["acks"] += 1

    def to_server_e2e_ack() -> None:
        seen["acks"] += 1

    client = Side(
        Machine(ICT if invite else NICT, False, timers),
        clock,
        on_send=lambda: net.send(to_server_request),
        on_ack=lambda: net.send(to_server_ack),
    )
    client.feed("start")
    clock.run(clock.now + 200.0)
    assert server is not None
    return client, server, seen


@pytest.mark.parametrize(
    ("invite", "final"), [(True, 486), (True, 200), (False, 200), (False, 404)]
)
def test_hundred_transactions_over_a_terrible_network(invite: bool, final: int) -> None:
    timers = TimerConfig(t1=0.5, t2=4.0, t4=5.0, d=32.0)
    clock = Clock()
    for seed in range(100):
        net = TerribleNet(clock, seed)
        client, server, seen = run_transaction(clock, net, invite, final, timers)
        states = (seed, client.machine.state, server.machine.state)
        assert client.machine.done, states
        assert server.machine.done, states
        assert not client.timers, seed
        assert not server.timers, seed
        assert seen["requests"] == 1, seed
        finals = [d for d in client.delivered if d == "reply"]
        assert "timeout" not in client.delivered, seed
        if invite and final < 300:
            assert seen["finals"] >= 1  # RFC 6026: retransmitted 2xx reach the TU too
            assert finals
        else:
            assert seen["finals"] == 1, (seed, client.delivered)
        if invite and final >= 300:
            assert seen["acks"] == 1, seed  # the server saw the ACK of its negative reply
            assert "timeout" not in server.delivered, seed
        assert net.sent > 1  # retransmissions really happened


def test_timer_b_fires_when_nobody_answers() -> None:
    clock = Clock()
    sent: list[float] = []
    side = Side(
        Machine(ICT, False, TimerConfig(t1=0.5)), clock, on_send=lambda: sent.append(clock.now)
    )
    side.feed("start")
    clock.run(100.0)
    assert side.delivered == ["timeout"]
    assert side.machine.done
    # A at T1, doubling, until B = 64*T1: sends at 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5
    assert sent == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


def test_timer_e_caps_at_t2_and_proceeding_uses_t2() -> None:
    clock = Clock()
    sent: list[float] = []
    side = Side(
        Machine(NICT, False, TimerConfig(t1=0.5, t2=4.0)),
        clock,
        on_send=lambda: sent.append(clock.now),
    )
    side.feed("start")
    clock.run(12.0)
    assert sent == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    side.feed("1xx")
    clock.run(16.0)
    assert sent[-1] == 15.5
    side.feed("2xx")
    clock.run(40.0)
    assert side.machine.done
    assert side.delivered == ["reply", "reply"]


def test_reliable_transport_never_retransmits_and_waits_zero() -> None:
    clock = Clock()
    sent: list[float] = []
    side = Side(Machine(NICT, True, TimerConfig()), clock, on_send=lambda: sent.append(clock.now))
    side.feed("start")
    side.feed("final")
    clock.run(1.0)
    assert sent == [0.0]
    assert side.machine.done  # Timer K = 0 on TCP


def test_timer_c_on_provisional_then_kill() -> None:
    clock = Clock()
    side = Side(Machine(ICT, False, TimerConfig(t1=0.5, c=3.0)), clock, on_send=lambda: None)
    side.feed("start")
    side.feed("1xx")
    clock.run(3.5)
    assert side.delivered == ["reply", "timeout"]
    assert not side.machine.done  # still waits for the 487 after the CANCEL
    side.feed("final")
    assert side.machine.state == "completed"


def test_stray_events_are_ignored() -> None:
    m = Machine(IST, False, TimerConfig())
    assert m.handle("timer_G") == ()
    assert m.handle("1xx") == ()
    assert m.state == "proceeding"
