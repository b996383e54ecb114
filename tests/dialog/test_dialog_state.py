"""The sans-IO dialog machine: the table, and "exactly once" over every input sequence."""

from __future__ import annotations

import itertools
import random

import pytest

from ksr.sip.dialog_state import DlgEvent, DlgInput, DlgState, next_step, reply_input

S, In, E = DlgState, DlgInput, DlgEvent


@pytest.mark.parametrize(
    ("inputs", "states", "events"),
    [
        ([In.PROVISIONAL, In.ANSWERED, In.ACK, In.BYE], [2, 3, 4, 5], [E.START, E.END]),
        ([In.ANSWERED, In.BYE], [3, 5], [E.START, E.END]),
        ([In.PROVISIONAL, In.FAILED], [2, 5], [E.FAILED]),
        ([In.FAILED, In.ANSWERED, In.BYE], [5, 5, 5], [E.FAILED]),
        (
            [In.ANSWERED, In.ACK, In.TIMEOUT, In.BYE, In.TERMINATE],
            [3, 4, 5, 5, 5],
            [E.START, E.END],
        ),
        ([In.PROVISIONAL, In.PROVISIONAL, In.TIMEOUT], [2, 2, 5], [E.FAILED]),
        ([In.ANSWERED, In.ANSWERED, In.FAILED, In.ACK, In.ACK], [3, 3, 3, 4, 4], [E.START]),
    ],
)
def test_sequences(inputs: list[DlgInput], states: list[int], events: list[DlgEvent]) -> None:
    st, seen_states, seen_events = S.UNCONFIRMED, [], []
    for inp in inputs:
        step = next_step(st, inp)
        st = step.state
        seen_states.append(int(st))
        if step.event:
            seen_events.append(step.event)
    assert seen_states == states
    assert seen_events == events


def test_exactly_once_for_every_sequence() -> None:
    """Every input sequence up to length 5 (and random long ones): at most one start, exactly
    one terminal event once deleted, none before, and nothing after."""
    inputs = list(DlgInput)
    seqs = [list(s) for n in range(1, 6) for s in itertools.product(inputs, repeat=n)]
    rnd = random.Random(7)
    seqs += [[rnd.choice(inputs) for _ in range(40)] for _ in range(2000)]
    for seq in seqs:
        st, starts, ends = S.UNCONFIRMED, 0, 0
        for inp in seq:
            step = next_step(st, inp)
            if ends:
                assert step.event is None
                assert step.state is S.DELETED
            st = step.state
            starts += step.event is E.START
            ends += step.event in (E.END, E.FAILED)
            if step.event is E.END:
                assert starts == 1  # only an answered call ends with dialog:end
        assert starts <= 1
        assert ends == (1 if st is S.DELETED else 0)


def test_reply_inputs() -> None:
    assert reply_input(100) is None
    assert reply_input(183) is In.PROVISIONAL
    assert reply_input(202) is In.ANSWERED
    assert reply_input(487) is In.FAILED
    assert reply_input(603) is In.FAILED
