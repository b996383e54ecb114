"""The timer service on trio's MockClock: virtual time, so no test waits for real."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ksr.core.timers import TimerHandle, TimerService, sift_up


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def _with_service(body) -> TimerService:  # type: ignore[no-untyped-def]
    svc = TimerService()
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        await body(svc)
        nursery.cancel_scope.cancel()
    return svc


async def test_one_shots_run_in_deadline_order(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[tuple[str, float]] = []

    async def body(svc: TimerService) -> None:
        t0 = trio.current_time()
        for name, delay in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0)):
            svc.once(delay, lambda n=name: seen.append((n, trio.current_time() - t0)))
        await trio.sleep(10)

    await _with_service(body)
    assert [n for n, _ in seen] == ["a", "a2", "b", "c"]  # ties keep the order they were added
    assert [t for _, t in seen] == [1.0, 1.0, 2.0, 3.0]


async def test_periodic_rearms_from_its_deadline_without_drift(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticks: list[float] = []

    async def body(svc: TimerService) -> None:
        t0 = trio.current_time()

        def tick() -> None:
            ticks.append(round(trio.current_time() - t0, 6))
            autojump_clock.jump(0.03)  # a callback that takes 30 ms of (virtual) time

        svc.every(0.1, tick)
        await trio.sleep(1.05)

    await _with_service(body)
    # ten ticks, each exactly on the 0.1 s grid: no accumulated drift
    assert ticks == [round(0.1 * i, 6) for i in range(1, 11)]


async def test_overrun_skips_missed_ticks_and_stays_on_grid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = TimerService()
    ticks: list[float] = []
    t0 = trio.current_time()
    svc.every(1.0, lambda: ticks.append(trio.current_time() - t0))
    svc.run_due(t0 + 3.5)  # the process was busy for 3.5 s: one run, not three
    assert len(ticks) == 1
    assert svc.next_deadline() == pytest.approx(t0 + 4.0)


async def test_cancel_stops_one_shot_and_periodic(autojump_clock: trio.testing.MockClock) -> None:
    runs = {"once": 0, "every": 0}

    async def body(svc: TimerService) -> None:
        h1 = svc.once(1.0, lambda: runs.__setitem__("once", runs["once"] + 1))
        h2 = svc.every(1.0, lambda: runs.__setitem__("every", runs["every"] + 1))
        h1.cancel()
        await trio.sleep(3.5)
        h2.cancel()
        await trio.sleep(5)

    svc = await _with_service(body)
    assert runs == {"once": 0, "every": 3}
    assert len(svc) == 0


async def test_failing_callback_does_not_stop_the_service(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[str] = []

    def boom() -> None:
        seen.append("boom")
        raise RuntimeError("callback bug")

    async def body(svc: TimerService) -> None:
        svc.every(1.0, boom)
        svc.once(1.5, lambda: seen.append("after"))
        await trio.sleep(3.2)

    svc = await _with_service(body)
    assert seen == ["boom", "after", "boom", "boom"]
    assert svc.failures == 3


async def test_timer_added_from_a_callback_and_async_callbacks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, float]] = []

    async def body(svc: TimerService) -> None:
        t0 = trio.current_time()

        async def slow() -> None:
            await trio.sleep(5)  # runs as its own task: does not delay the next timer
            seen.append(("slow-done", trio.current_time() - t0))

        def first() -> None:
            seen.append(("first", trio.current_time() - t0))
            svc.once(0.5, lambda: seen.append(("nested", trio.current_time() - t0)))

        svc.once(1.0, first)
        svc.once(1.0, slow)
        svc.once(2.0, lambda: seen.append(("second", trio.current_time() - t0)))
        await trio.sleep(10)

    await _with_service(body)
    assert seen == [("first", 1.0), ("nested", 1.5), ("second", 2.0), ("slow-done", 6.0)]


def test_bad_interval_is_refused() -> None:
    async def main() -> None:
        svc = TimerService()
        for bad in (0, -1, float("inf"), float("nan")):
            with pytest.raises(ValueError, match="positive"):
                svc.every(bad, lambda: None)

    trio.run(main)


async def test_cancelled_timers_do_not_wake_the_timer_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """tm and dialog cancel most timers long before they are due (Timer B, C, F, the dialog's
    early timeout...): once the task is up, it sleeps until the next live deadline, not
    theirs."""
    seen: list[float] = []

    async def body(svc: TimerService) -> None:
        t0 = trio.current_time()
        svc.once(5.0, lambda: seen.append(trio.current_time() - t0))
        doomed = [svc.once(d, lambda: seen.append(-1.0)) for d in (10.0, 11.0, 12.0)]
        svc.once(20.0, lambda: seen.append(trio.current_time() - t0))
        await trio.sleep(1)
        before = svc.wakeups
        for h in doomed:
            h.cancel()
        await trio.sleep(30)
        # woken at 5 s and 20 s only (not at 10, 11 and 12 s as well)
        assert svc.wakeups - before == 2

    svc = await _with_service(body)
    assert seen == [5.0, 20.0]
    assert svc.cancelled_on_heap == 0


async def test_coarse_timers_share_a_wakeup_and_are_never_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A coarse timer of a second or more runs on the 1/16 s grid: never before its delay, at
    most 1/16 s after, together with the others of the same step; short ones stay exact."""
    seen: list[tuple[str, float]] = []

    async def body(svc: TimerService) -> None:
        autojump_clock.jump(0.01)  # off the grid
        t0 = trio.current_time()

        def at(name: str) -> None:
            seen.append((name, trio.current_time() - t0))

        svc.once(5.0, at, "c1", coarse=True)
        autojump_clock.jump(0.003)
        svc.once(5.0, at, "c2", coarse=True)
        svc.once(5.0, at, "exact")
        svc.once(0.5, at, "short", coarse=True)
        await trio.testing.wait_all_tasks_blocked()
        before = svc.wakeups
        await trio.sleep(10)
        assert svc.wakeups - before == 3  # 0.503 s, 5.003 s, and the grid step after 5.01 s

    await _with_service(body)
    assert [n for n, _ in seen] == ["short", "exact", "c1", "c2"]
    times = dict(seen)
    assert times["short"] == pytest.approx(0.503)
    assert times["exact"] == pytest.approx(5.003)
    assert times["c1"] == times["c2"]
    assert 5.003 <= times["c2"] <= 5.0 + 1 / 16 + 1e-9


async def test_new_earliest_timer_moves_the_sleep_without_a_wakeup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A timer due before the one the task sleeps toward, started from another task: it
    runs on time, and the task wakes only when something is due (not to re-read the heap)."""
    seen: list[tuple[str, float]] = []

    async def body(svc: TimerService) -> None:
        t0 = trio.current_time()

        def at(name: str) -> None:
            seen.append((name, trio.current_time() - t0))

        svc.once(10.0, at, "late")
        await trio.sleep(1)  # the task sleeps toward 10 s
        before = svc.wakeups
        svc.once(2.0, at, "new head")  # due at 3 s
        svc.once(0.5, at, "newer head")  # due at 1.5 s
        svc.once(4.0, at, "not a head")  # due at 5 s: leaves the sleep as it is
        await trio.sleep(20)
        # woken at 1.5, 3, 5 and 10 s: once per due timer, none for the starts
        assert svc.wakeups - before == 4

    await _with_service(body)
    assert seen == [("newer head", 1.5), ("new head", 3.0), ("not a head", 5.0), ("late", 10.0)]


def test_new_earliest_timer_on_a_clock_that_only_moves_when_told() -> None:
    """The same without autojump: a jump short of the new deadline runs nothing, the jump
    onto it runs the timer (trio's deadline heap holds the moved deadline)."""
    clock = trio.testing.MockClock()
    seen: list[float] = []

    async def main() -> None:
        async def body(svc: TimerService) -> None:
            t0 = trio.current_time()
            svc.once(60.0, lambda: seen.append(-1.0))
            await trio.testing.wait_all_tasks_blocked()
            svc.once(2.0, lambda: seen.append(trio.current_time() - t0))
            clock.jump(1.999)
            await trio.testing.wait_all_tasks_blocked()
            assert seen == []
            clock.jump(0.001)
            await trio.testing.wait_all_tasks_blocked()
            assert seen == [2.0]

        await _with_service(body)

    trio.run(main, clock=clock)
    assert seen == [2.0]


async def test_timers_started_before_the_task_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Timers started before the timer task (no sleep to move yet) run once it is up."""
    svc = TimerService()
    seen: list[tuple[str, float]] = []
    t0 = trio.current_time()
    svc.once(3.0, lambda: seen.append(("b", trio.current_time() - t0)))
    svc.once(1.0, lambda: seen.append(("a", trio.current_time() - t0)))
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert seen == [("a", 1.0), ("b", 3.0)]


async def test_an_earlier_periodic_timer_moves_the_sleep(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[float] = []

    async def body(svc: TimerService) -> None:
        t0 = trio.current_time()
        svc.once(30.0, lambda: None)
        await trio.sleep(0.5)
        h = svc.every(1.0, lambda: seen.append(trio.current_time() - t0))
        await trio.sleep(3.2)
        h.cancel()

    await _with_service(body)
    assert seen == [1.5, 2.5, 3.5]


def test_sift_up_builds_heapqs_heap() -> None:
    import heapq
    import random

    rng = random.Random(3)
    ours: list[TimerHandle] = []
    theirs: list[TimerHandle] = []
    for seq in range(3000):
        h = TimerHandle(float(rng.randrange(200)) / 4, seq, None, (), None, "", None)
        ours.append(h)
        sift_up(ours, len(ours) - 1)
        heapq.heappush(theirs, h)
    assert ours == theirs  # the same layout: heappop then takes the same order
    order = [heapq.heappop(ours) for _ in range(len(ours))]
    assert [(h.deadline, h.seq) for h in order] == sorted((h.deadline, h.seq) for h in order)


@pytest.mark.parametrize("serving", [False, True])
def test_now_reads_perf_counter_plus_the_clocks_offset(serving: bool) -> None:
    """On trio's system clock and on the serving clock (both ``perf_counter()`` plus an
    offset) the service reads the time itself: the clock's time, between two reads of it."""
    from ksr.core.idle_wait import IdleWaitClock

    async def main() -> tuple[float, float, float, bool]:
        svc = TimerService()
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.run)
            before = trio.current_time()
            now = svc.now()
            after = trio.current_time()
            perf = svc._perf
            nursery.cancel_scope.cancel()
        assert not svc._perf  # the task ended: the clock is no longer known
        return before, now, after, perf

    before, now, after, perf = trio.run(main, clock=IdleWaitClock() if serving else None)
    assert perf
    assert before <= now <= after


async def test_now_on_any_other_clock_asks_it(autojump_clock: trio.testing.MockClock) -> None:
    async def body(svc: TimerService) -> None:
        assert not svc._perf
        await trio.sleep(2.5)
        assert svc.now() == trio.current_time()

    await _with_service(body)


async def test_queued_timers_run_as_on_the_heap(autojump_clock: trio.testing.MockClock) -> None:
    """Timers queued by delay (start_queued) run when they would have on the heap: at their
    1/16 s grid step, in (deadline, start) order among the heap's timers; a cancelled one,
    queued or first of its queue, never runs."""
    seen: list[tuple[str, float]] = []

    async def body(svc: TimerService) -> None:
        t0 = trio.current_time()

        def at(name: str) -> None:
            seen.append((name, trio.current_time() - t0))

        handles = {}
        for i in range(6):
            now = svc.now()
            handles[f"q{i}"] = svc.start_queued(now, 2.0, False, at, (f"q{i}",))
            handles[f"r{i}"] = svc.start_queued(now, 3.0, False, at, (f"r{i}",))
            handles[f"h{i}"] = svc.start_from(now, 2.0, True, at, (f"h{i}",))
            await trio.sleep(0.25)
        for name in ("q0", "q2", "q3", "r5", "h1"):
            handles[name].cancel()
        assert len(svc) == 18 - 5
        await trio.sleep(10)
        assert len(svc) == 0
        assert svc.cancelled_on_heap == 0

    await _with_service(body)
    expect = sorted(
        (2.0 + 0.25 * i if k != "r" else 3.0 + 0.25 * i, i, "qrh".index(k), f"{k}{i}")
        for k in "qrh"
        for i in range(6)
        if f"{k}{i}" not in ("q0", "q2", "q3", "r5", "h1")
    )
    assert seen == [(name, t) for t, _, _, name in expect]


async def test_lax_timers_run_on_whole_seconds_with_an_aligned_periodic(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A lax queued timer (tm's wait timers) runs on the whole second after its delay, never
    before it, at most a second late, in the same wake-up as a periodic timer aligned on
    whole seconds."""
    seen: list[tuple[str, float]] = []

    async def body(svc: TimerService) -> None:
        autojump_clock.jump(0.3)
        t0 = trio.current_time()

        def at(name: str) -> None:
            seen.append((name, trio.current_time()))

        svc.every(1.0, lambda: None, aligned=True)
        svc.start_queued(svc.now(), 5.0, True, at, ("w1",))
        autojump_clock.jump(0.4)
        svc.start_queued(svc.now(), 5.0, True, at, ("w2",))
        await trio.testing.wait_all_tasks_blocked()
        before = svc.wakeups
        await trio.sleep(7)  # to 7.7 s
        # one wake-up per whole second (2 s to 7 s): the two wait timers add none
        assert svc.wakeups - before == 6
        times = dict(seen)
        assert times["w1"] == times["w2"] == float(int(t0 + 0.4 + 5.0) + 1)
        assert t0 + 0.4 + 5.0 <= times["w2"] <= t0 + 0.4 + 6.0

    await _with_service(body)
    assert [n for n, _ in seen] == ["w1", "w2"]


def test_queued_timers_survive_compaction() -> None:
    """Cancelled timers outnumbering the live ones are dropped from the heap and the queues
    alike; what is left runs in order."""
    svc = TimerService()
    ran: list[int] = []
    live = []
    for i in range(5000):
        h = svc.start_queued(float(i) / 100, 30.0, False, ran.append, (i,))
        if i % 7:
            h.cancel()
        else:
            live.append(i)
        svc.start_from(float(i) / 100, 0.5, False, ran.append, (-1,)).cancel()
    assert svc.cancelled_on_heap < 2048
    assert len(svc) == len(live)
    svc.tick(1e9)
    assert ran == live
    assert len(svc) == 0


async def test_cancelling_the_timer_the_task_sleeps_for_moves_its_sleep(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """tm's Timer A of a fresh INVITE is the earliest timer, and the reply stops it a few
    milliseconds later: the task, already asleep toward it, then sleeps toward the next live
    timer instead of waking for nothing; not more than once per UNARM_SPACING (a high rate
    of such timers would pay a move of the sleep per timer, and its wake-ups are shared)."""
    seen: list[float] = []

    async def body(svc: TimerService) -> None:
        t0 = trio.current_time()
        svc.once(5.0, lambda: seen.append(trio.current_time() - t0))
        await trio.testing.wait_all_tasks_blocked()
        before = svc.wakeups
        a = svc.once(0.5, lambda: seen.append(-1.0))
        a2 = svc.once(0.5, lambda: seen.append(-2.0))
        await trio.testing.wait_all_tasks_blocked()
        a2.cancel()  # another one due as early comes first: the sleep stays
        await trio.testing.wait_all_tasks_blocked()
        a.cancel()
        await trio.sleep(1)
        assert svc.wakeups == before  # not at 0.5 s
        b = svc.once(0.2, lambda: seen.append(-3.0))  # due at 1.2 s
        b2 = svc.once(0.1, lambda: seen.append(-4.0))  # due at 1.1 s
        await trio.testing.wait_all_tasks_blocked()
        b2.cancel()  # the sleep moves to 1.2 s
        b.cancel()  # less than 0.25 s after the last move: the task wakes at 1.2 s for nothing
        await trio.sleep(10)
        assert svc.wakeups - before == 2  # at 1.2 s and 5 s
        assert svc.cancelled_on_heap == 0

    await _with_service(body)
    assert seen == [5.0]
