"""The dialog state machine of a proxy that tracks calls (Kamailio's dialog states), sans-IO.

Rules kept in this file:

* Every transition is in ``TRANSITIONS``; anything not listed leaves the state unchanged and
  emits nothing (a retransmission, a stray reply of another fork, a late ACK).
* ``DELETED`` absorbs every input. A dialog's terminal event is therefore emitted exactly once,
  whatever reaches it afterwards: a retransmitted BYE, a timer that fires late, an RPC racing a
  BYE. Callers never need their own "already ended?" checks.
* The machine knows nothing about sockets, timers or scripts: it maps (state, input) to
  (new state, event to emit).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum


class DlgState(IntEnum):
    """Numbers as shown by ``dlg.list`` and stored in the database."""

    UNCONFIRMED = 1  # INVITE seen, no reply yet
    EARLY = 2  # a provisional reply with a To tag or not
    CONFIRMED_NA = 3  # 2xx seen, ACK not yet
    CONFIRMED = 4  # ACK seen
    DELETED = 5


class DlgInput(Enum):
    PROVISIONAL = "1xx"
    ANSWERED = "2xx"
    FAILED = "negative final reply"
    ACK = "ACK"
    BYE = "BYE"
    TIMEOUT = "timeout"
    TERMINATE = "ended locally"  # RPC dlg.end_dlg / KSR.dialog.dlg_bye / shutdown policy

    # Members are singletons that compare by identity: hashed by identity too. Enum's own
    # __hash__ (of the name) is interpreted code, run for each TRANSITIONS lookup.
    __hash__ = object.__hash__


class DlgEvent(StrEnum):
    START = "dialog:start"
    END = "dialog:end"
    FAILED = "dialog:failed"


@dataclass(frozen=True, slots=True)
class Step:
    state: DlgState
    event: DlgEvent | None = None


S, In, E = DlgState, DlgInput, DlgEvent

TRANSITIONS: dict[tuple[DlgState, DlgInput], Step] = {
    (S.UNCONFIRMED, In.PROVISIONAL): Step(S.EARLY),
    (S.UNCONFIRMED, In.ANSWERED): Step(S.CONFIRMED_NA, E.START),
    (S.UNCONFIRMED, In.FAILED): Step(S.DELETED, E.FAILED),
    (S.UNCONFIRMED, In.BYE): Step(S.DELETED, E.FAILED),
    (S.UNCONFIRMED, In.TIMEOUT): Step(S.DELETED, E.FAILED),
    (S.UNCONFIRMED, In.TERMINATE): Step(S.DELETED, E.FAILED),
    (S.EARLY, In.ANSWERED): Step(S.CONFIRMED_NA, E.START),
    (S.EARLY, In.FAILED): Step(S.DELETED, E.FAILED),
    (S.EARLY, In.BYE): Step(S.DELETED, E.FAILED),  # RFC 3261 §15: BYE may end an early dialog
    (S.EARLY, In.TIMEOUT): Step(S.DELETED, E.FAILED),
    (S.EARLY, In.TERMINATE): Step(S.DELETED, E.FAILED),
    (S.CONFIRMED_NA, In.ACK): Step(S.CONFIRMED),
    (S.CONFIRMED_NA, In.BYE): Step(S.DELETED, E.END),
    (S.CONFIRMED_NA, In.TIMEOUT): Step(S.DELETED, E.END),
    (S.CONFIRMED_NA, In.TERMINATE): Step(S.DELETED, E.END),
    (S.CONFIRMED, In.BYE): Step(S.DELETED, E.END),
    (S.CONFIRMED, In.TIMEOUT): Step(S.DELETED, E.END),
    (S.CONFIRMED, In.TERMINATE): Step(S.DELETED, E.END),
}


def next_step(state: DlgState, inp: DlgInput) -> Step:
    """Where ``inp`` takes a dialog in ``state``; unlisted pairs keep the state, emit nothing."""
    step = TRANSITIONS.get((state, inp))
    return step if step is not None else Step(state)


def is_active(state: DlgState) -> bool:
    """Counted in ``dialog:active_dialogs`` (answered and not ended)."""
    return state in (DlgState.CONFIRMED_NA, DlgState.CONFIRMED)


def is_early(state: DlgState) -> bool:
    """Counted in ``dialog:early_dialogs``."""
    return state in (DlgState.UNCONFIRMED, DlgState.EARLY)


def reply_input(status: int) -> DlgInput | None:
    """The input a reply to the initial INVITE is (None for 100 Trying: no dialog yet)."""
    if 101 <= status < 200:
        return DlgInput.PROVISIONAL
    if 200 <= status < 300:
        return DlgInput.ANSWERED
    if status >= 300:
        return DlgInput.FAILED
    return None
