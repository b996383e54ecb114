"""The circuit breaker's states, with the time passed in (no clock, no sleeping)."""

from __future__ import annotations

from ksr.suspend.breaker import Breaker


def test_opens_after_consecutive_failures_and_probes_after_the_cooldown() -> None:
    b = Breaker(failures=3, cooldown=2.0)
    assert b.allow(0.0)
    assert b.failure(0.0) is False
    assert b.failure(0.1) is False
    b.success()  # a success resets the count
    assert b.failure(0.2) is False
    assert b.failure(0.3) is False
    assert b.failure(0.4) is True  # the third in a row opens it
    assert b.is_open
    assert not b.allow(1.0)
    assert b.retry_in(1.0) == 1.4
    assert b.allow(2.5)  # the probe
    assert not b.allow(2.5)  # only one probe at a time
    assert b.failure(2.6) is False  # probe failed: open again (already open: not "opened")
    assert not b.allow(3.0)
    assert b.allow(4.7)
    assert b.success() is True  # probe succeeded: closed
    assert b.allow(4.8)
    assert not b.is_open
    assert b.retry_in(4.8) == 0.0
