"""RFC 3261 §17 transaction state machines (with RFC 6026's Accepted state), sans-IO.

Rules of this file:

* Every transition of the four machines is a row of ``TABLE``: (machine, state, event) ->
  (next state, actions). A (state, event) pair missing from the table is ignored (a stray
  retransmission or a timer that lost the race with a state change).
* A machine never touches the network or a clock. Inputs are events (a reply arrived, a timer
  fired, the TU asks to send a reply); outputs are actions the I/O shell carries out: send the
  request / the last reply / an ACK, start or stop a timer, deliver something to the TU.
* The machine does not know what it is used for (proxy branch, local request...). Timer values
  come from ``TimerConfig``, so a proxy can put its fr_timer in Timer B/F and its fr_inv_timer in
  Timer C (RFC 3261 §16.6 step 11).

Events: ``start``, ``1xx``, ``2xx``, ``final`` (300-699), ``request`` (a retransmission of the
request), ``ack``, ``send_1xx``, ``send_2xx``, ``send_final``, ``timer_<X>``,
``transport_error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Machines.
ICT: Final = "ict"  # INVITE client transaction (§17.1.1)
NICT: Final = "nict"  # non-INVITE client transaction (§17.1.2)
IST: Final = "ist"  # INVITE server transaction (§17.2.1)
NIST: Final = "nist"  # non-INVITE server transaction (§17.2.2)

# Action opcodes (first item of an action tuple).
SEND: Final = "send"  # client: (re)send the request; server: (re)send the last reply
SEND_ACK: Final = "send_ack"  # ICT: send (or resend) the ACK for a non-2xx final reply
START: Final = "start"  # ("start", timer): start the timer with its next interval
STOP: Final = "stop"  # ("stop", timer)
DELIVER: Final = (
    "deliver"  # ("deliver", what): pass the event to the TU ("reply", "timeout", "ack", "request")
)
TERMINATED: Final = "terminated"  # the machine is done: the shell frees it

Action = tuple[str, str]

# Retransmission timers: never started on reliable transports (§17.1.1.2, §17.1.2.2, §17.2.1).
RETRANSMIT_TIMERS: Final = frozenset({"A", "E", "G"})
# Wait timers: their expiry only terminates the machine (it absorbed retransmissions long
# enough); running one late keeps the machine a little longer and changes nothing else.
WAIT_TIMERS: Final = frozenset({"D", "I", "J", "K", "L", "M"})


@dataclass(slots=True)
class TimerConfig:
    """Timer values in seconds (RFC 3261 Table 4). None = the RFC default from T1/T4."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    b: float | None = None  # INVITE: no reply at all (default 64*T1)
    c: float | None = None  # INVITE: after a provisional (proxy Timer C); None = wait forever
    d: float = 32.0  # wait for final reply retransmissions (unreliable)
    f: float | None = None  # non-INVITE: no final reply (default 64*T1)
    h: float | None = None  # wait for ACK (default 64*T1)
    i: float | None = None  # absorb ACK retransmissions (default T4)
    j: float | None = None  # absorb request retransmissions (default 64*T1)
    k: float | None = None  # absorb reply retransmissions (default T4)
    l: float | None = None  # RFC 6026 Timer L, server Accepted state (default 64*T1)  # noqa: E741
    m: float | None = None  # RFC 6026 Timer M, client Accepted state (default 64*T1)
    kill: float | None = None  # after Timer C fired: give up on the final reply (default 64*T1)

    def value(self, name: str, reliable: bool) -> float:
        """The (first) interval of a timer."""
        if name in RETRANSMIT_TIMERS:
            return self.t1
        if reliable and name in ("D", "I", "J", "K"):
            return 0.0
        v = self._configured(name)
        if v is not None:
            return float(v)
        if name in ("I", "K"):
            return self.t4
        return 64 * self.t1

    def _configured(self, name: str) -> float | None:
        """The field of timer ``name`` ("B" -> ``b``): read directly for the timers a call
        starts (compiled, a ``getattr`` by a lower-cased name was most of ``value``)."""
        if name == "B":
            return self.b
        if name == "C":
            return self.c
        if name == "D":
            return self.d
        if name == "F":
            return self.f
        if name == "J":
            return self.j
        if name == "K":
            return self.k
        if name == "L":
            return self.l
        if name == "M":
            return self.m
        v: float | None = getattr(self, name.lower())
        return v


# (machine, state, event) -> (next state, actions). States: the RFC's names in lower case.
TABLE: dict[tuple[str, str, str], tuple[str, tuple[Action, ...]]] = {
    # -- INVITE client (§17.1.1, RFC 6026 §8.4) -----------------------------------------------
    (ICT, "init", "start"): ("calling", ((SEND, ""), (START, "A"), (START, "B"))),
    (ICT, "calling", "timer_A"): ("calling", ((SEND, ""), (START, "A"))),
    (ICT, "calling", "timer_B"): (
        "terminated",
        ((STOP, "A"), (DELIVER, "timeout"), (TERMINATED, "")),
    ),
    (ICT, "calling", "transport_error"): (
        "terminated",
        ((STOP, "A"), (STOP, "B"), (DELIVER, "timeout"), (TERMINATED, "")),
    ),
    (ICT, "calling", "1xx"): (
        "proceeding",
        ((STOP, "A"), (STOP, "B"), (START, "C"), (DELIVER, "reply")),
    ),
    (ICT, "calling", "2xx"): (
        "accepted",
        ((STOP, "A"), (STOP, "B"), (START, "M"), (DELIVER, "reply")),
    ),
    (ICT, "calling", "final"): (
        "completed",
        ((STOP, "A"), (STOP, "B"), (SEND_ACK, ""), (START, "D"), (DELIVER, "reply")),
    ),
    (ICT, "proceeding", "1xx"): ("proceeding", ((DELIVER, "reply"),)),
    (ICT, "proceeding", "timer_C"): ("proceeding", ((START, "KILL"), (DELIVER, "timeout"))),
    (ICT, "proceeding", "timer_KILL"): ("terminated", ((TERMINATED, ""),)),
    (ICT, "proceeding", "2xx"): (
        "accepted",
        ((STOP, "C"), (STOP, "KILL"), (START, "M"), (DELIVER, "reply")),
    ),
    (ICT, "proceeding", "final"): (
        "completed",
        ((STOP, "C"), (STOP, "KILL"), (SEND_ACK, ""), (START, "D"), (DELIVER, "reply")),
    ),
    (ICT, "completed", "final"): ("completed", ((SEND_ACK, ""),)),
    (ICT, "completed", "timer_D"): ("terminated", ((TERMINATED, ""),)),
    (ICT, "accepted", "2xx"): ("accepted", ((DELIVER, "reply"),)),
    (ICT, "accepted", "timer_M"): ("terminated", ((TERMINATED, ""),)),
    # -- non-INVITE client (§17.1.2) ----------------------------------------------------------
    (NICT, "init", "start"): ("trying", ((SEND, ""), (START, "E"), (START, "F"))),
    (NICT, "trying", "timer_E"): ("trying", ((SEND, ""), (START, "E"))),
    (NICT, "trying", "timer_F"): (
        "terminated",
        ((STOP, "E"), (DELIVER, "timeout"), (TERMINATED, "")),
    ),
    (NICT, "trying", "transport_error"): (
        "terminated",
        ((STOP, "E"), (STOP, "F"), (DELIVER, "timeout"), (TERMINATED, "")),
    ),
    (NICT, "trying", "1xx"): ("proceeding", ((DELIVER, "reply"),)),
    (NICT, "trying", "2xx"): (
        "completed",
        ((STOP, "E"), (STOP, "F"), (START, "K"), (DELIVER, "reply")),
    ),
    (NICT, "trying", "final"): (
        "completed",
        ((STOP, "E"), (STOP, "F"), (START, "K"), (DELIVER, "reply")),
    ),
    (NICT, "proceeding", "timer_E"): ("proceeding", ((SEND, ""), (START, "E"))),
    (NICT, "proceeding", "timer_F"): (
        "terminated",
        ((STOP, "E"), (DELIVER, "timeout"), (TERMINATED, "")),
    ),
    (NICT, "proceeding", "1xx"): ("proceeding", ((DELIVER, "reply"),)),
    (NICT, "proceeding", "2xx"): (
        "completed",
        ((STOP, "E"), (STOP, "F"), (START, "K"), (DELIVER, "reply")),
    ),
    (NICT, "proceeding", "final"): (
        "completed",
        ((STOP, "E"), (STOP, "F"), (START, "K"), (DELIVER, "reply")),
    ),
    (NICT, "completed", "timer_K"): ("terminated", ((TERMINATED, ""),)),
    # -- INVITE server (§17.2.1, RFC 6026 §7.1) -----------------------------------------------
    (IST, "proceeding", "request"): ("proceeding", ((SEND, ""),)),
    (IST, "proceeding", "send_1xx"): ("proceeding", ((SEND, ""),)),
    (IST, "proceeding", "send_2xx"): ("accepted", ((SEND, ""), (START, "L"))),
    (IST, "proceeding", "send_final"): ("completed", ((SEND, ""), (START, "G"), (START, "H"))),
    (IST, "proceeding", "ack"): (
        "proceeding",
        ((DELIVER, "ack"),),
    ),  # e2e ACK seen early: TU decides
    (IST, "completed", "request"): ("completed", ((SEND, ""),)),
    (IST, "completed", "timer_G"): ("completed", ((SEND, ""), (START, "G"))),
    (IST, "completed", "timer_H"): (
        "terminated",
        ((STOP, "G"), (DELIVER, "timeout"), (TERMINATED, "")),
    ),
    (IST, "completed", "ack"): ("confirmed", ((STOP, "G"), (STOP, "H"), (START, "I"))),
    (IST, "confirmed", "timer_I"): ("terminated", ((TERMINATED, ""),)),
    (IST, "accepted", "send_2xx"): ("accepted", ((SEND, ""),)),
    (IST, "accepted", "ack"): ("accepted", ((DELIVER, "ack"),)),
    (IST, "accepted", "timer_L"): ("terminated", ((TERMINATED, ""),)),
    # -- non-INVITE server (§17.2.2) ----------------------------------------------------------
    (NIST, "trying", "send_1xx"): ("proceeding", ((SEND, ""),)),
    (NIST, "trying", "send_2xx"): ("completed", ((SEND, ""), (START, "J"))),
    (NIST, "trying", "send_final"): ("completed", ((SEND, ""), (START, "J"))),
    (NIST, "proceeding", "request"): ("proceeding", ((SEND, ""),)),
    (NIST, "proceeding", "send_1xx"): ("proceeding", ((SEND, ""),)),
    (NIST, "proceeding", "send_2xx"): ("completed", ((SEND, ""), (START, "J"))),
    (NIST, "proceeding", "send_final"): ("completed", ((SEND, ""), (START, "J"))),
    (NIST, "completed", "request"): ("completed", ((SEND, ""),)),
    (NIST, "completed", "timer_J"): ("terminated", ((TERMINATED, ""),)),
}

INITIAL: Final[dict[str, str]] = {ICT: "init", NICT: "init", IST: "proceeding", NIST: "trying"}

# TABLE by machine, then state, then event: a machine reads its own table (``Machine._rows``)
# by its state and the event, two lookups by str (hashes cached), where TABLE's key was a
# tuple made and hashed per event (compiled: ~770 instructions per event, ~9 events per call)
_BY_KIND: Final[dict[str, dict[str, dict[str, tuple[str, tuple[Action, ...]]]]]] = {}
for (_kind, _state, _event), _row in TABLE.items():
    _BY_KIND.setdefault(_kind, {}).setdefault(_state, {})[_event] = _row


def reply_event(status: int) -> str:
    return "1xx" if status < 200 else ("2xx" if status < 300 else "final")


def send_event(status: int) -> str:
    return "send_1xx" if status < 200 else ("send_2xx" if status < 300 else "send_final")


class Machine:
    """One transaction's state. ``handle(event)`` returns the actions; ``START`` actions come
    with their interval in ``intervals`` (the shell reads ``interval(timer)``)."""

    __slots__ = ("kind", "state", "reliable", "timers", "_next", "_rows", "_filter")

    def __init__(self, kind: str, reliable: bool, timers: TimerConfig) -> None:
        self.kind = kind
        self.state = INITIAL[kind]
        self.reliable = reliable
        self.timers = timers
        self._next: dict[str, float] = {}  # next interval of backing-off timers
        self._rows = _BY_KIND[kind]  # this kind's rows: state -> event -> (next, actions)
        # whether some START is left out of the actions (read once: the machine's kind,
        # transport and timers do not change)
        self._filter = reliable or (kind == ICT and timers.c is None)

    @property
    def is_client(self) -> bool:
        return self.kind in (ICT, NICT)

    @property
    def done(self) -> bool:
        return self.state == "terminated"

    def handle(self, event: str) -> tuple[Action, ...]:
        rows = self._rows.get(self.state)
        if rows is None:
            return ()
        row = rows.get(event)
        if row is None:
            return ()
        self.state, actions = row
        if self._filter:
            actions = tuple(a for a in actions if not self._skipped(a))
        return actions

    def _skipped(self, a: Action) -> bool:
        if a[0] != START:
            return False
        if self.reliable and a[1] in RETRANSMIT_TIMERS:
            return True
        return a[1] == "C" and self.timers.c is None

    def interval(self, timer: str) -> float:
        """The interval for a START of ``timer`` (advancing the back-off of A/E/G: the first
        interval is T1, then doubled, capped at T2 for E and G). The three by name: compiled,
        a module-level table was a globals lookup per timer started."""
        if timer != "A" and timer != "E" and timer != "G":
            return self.timers.value(timer, self.reliable)
        timers = self.timers
        if timer == "E" and self.state == "proceeding":
            return timers.t2  # §17.1.2.2: in Proceeding, Timer E is reset to T2
        cur = self._next.get(timer, timers.t1)
        nxt = cur * 2
        if timer != "A" and nxt > timers.t2:
            nxt = timers.t2
        self._next[timer] = nxt
        return cur
