"""Request and reply counts of the last minutes, per step of a few seconds, for the status
page's chart. Sans-IO: ``tick(now, figures)`` is fed the worker's counters (once a second);
each step keeps how much every counter grew during it, so the steps of all workers add up by
their start time (``merge``)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

SERIES = ("requests", "replies_in", "replies_out")


class RateHistory:
    def __init__(self, step: int, keep: int) -> None:
        self.step = step
        self.keep = keep  # steps kept
        self.steps: OrderedDict[int, list[int]] = OrderedDict()
        self._last: list[int] | None = None

    def tick(self, now: float, figures: list[int]) -> None:
        """Add what the counters grew since the last tick to the step ``now`` falls in."""
        if self._last is None or any(f < last for f, last in zip(figures, self._last, strict=True)):
            self._last = list(figures)  # first tick, or counters were reset: a new baseline
            return
        start = int(now // self.step) * self.step
        row = self.steps.get(start)
        if row is None:
            row = self.steps[start] = [0] * len(figures)
            while len(self.steps) > self.keep:
                self.steps.popitem(last=False)
        for i, (f, last) in enumerate(zip(figures, self._last, strict=True)):
            row[i] += f - last
        self._last = list(figures)

    def rebase(self) -> None:
        """The counters jumped for another reason than traffic (a restarted worker took over
        its predecessor's counts): start again from the next tick."""
        self._last = None

    def to_json(self) -> list[list[int]]:
        return [[start, *row] for start, row in self.steps.items()]


def merge(parts: list[list[list[int]]], step: int, keep: int, now: float) -> dict[str, Any]:
    """Every worker's steps added up by start time; steps no worker counted anything in are 0,
    so the chart's time axis is regular. Rates are per second."""
    total: dict[int, list[int]] = {}
    for part in parts:
        for start, *row in part:
            acc = total.setdefault(start, [0] * len(row))
            for i, v in enumerate(row):
                acc[i] += v
    last = int(now // step) * step - step  # the last complete step
    points = []
    for k in range(keep):
        start = last - (keep - 1 - k) * step
        row = total.get(start, [0] * len(SERIES))
        points.append([start, *(round(v / step, 3) for v in row)])
    return {"step": step, "series": list(SERIES), "points": points}
