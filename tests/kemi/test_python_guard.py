"""The runaway guard of Python routes (``core.script_max_seconds``): a run past its deadline
is stopped by SIGALRM; starting and ending a run make no system call, and the interval timer
stops once no route has run for a while (an idle worker gets no signals)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from ksr.kemi.python_engine import AlarmGuard, ScriptTimeout


@pytest.fixture
def guard() -> Iterator[AlarmGuard]:
    before = signal.getsignal(signal.SIGALRM)
    g = AlarmGuard()
    signal.signal(signal.SIGALRM, g.on_alarm)
    try:
        yield g
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def test_a_run_past_its_deadline_is_stopped(guard: AlarmGuard) -> None:
    guard.arm(0.2)
    stopped = False
    start = time.monotonic()
    try:
        while time.monotonic() - start < 10:
            pass
    except ScriptTimeout:
        stopped = True
    assert stopped
    assert not guard.armed


def test_runs_within_their_time_are_left_alone_and_the_timer_stops_when_idle(
    guard: AlarmGuard,
) -> None:
    for _ in range(50):  # short runs: nothing raised, the interval timer keeps its setting
        guard.arm(0.2)
        guard.disarm()
    assert signal.getitimer(signal.ITIMER_REAL)[1] == pytest.approx(0.0125)
    deadline = time.monotonic() + 10
    while guard.tick and time.monotonic() < deadline:
        time.sleep(0.05)  # ticks pass while no route runs
    assert guard.tick == 0.0
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    guard.arm(0.2)  # the next run starts it again
    assert signal.getitimer(signal.ITIMER_REAL)[1] == pytest.approx(0.0125)
    guard.disarm()


def test_the_interval_timer_stops_before_the_process_exits() -> None:
    """Python gives SIGALRM its default action back while it shuts down; a tick after that
    would end an exiting process with "Alarm clock" (exit status 142), so the timer is
    stopped by an exit handler first, and SIGALRM ignored from then on (a tick already sent
    but not yet delivered, as valgrind delivers them, must not end the process either)."""
    code = (
        "import atexit, signal\n"
        "from ksr.kemi.python_engine import AlarmGuard\n"
        "g = AlarmGuard.install()\n"
        "g.arm(0.2); g.disarm()\n"
        "assert signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0)\n"
        "atexit._run_exitfuncs()\n"
        "assert signal.getsignal(signal.SIGALRM) == signal.SIG_IGN\n"
        "signal.raise_signal(signal.SIGALRM)\n"
        "print(signal.getitimer(signal.ITIMER_REAL))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(0.0, 0.0)"
