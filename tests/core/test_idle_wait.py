"""The serving clock that reads UDP sockets while trio sleeps (ksr/core/idle_wait.py).

Each test runs its own ``trio.run`` with the clock, as ``ksr run`` does, on real sockets. The
clock must read datagrams where it wakes, and hand back to trio whenever trio has something to
do: its own descriptors ready, a task made runnable or a deadline moved by a read, a deadline
due. Each hand-back is checked by what would hang (until the test's fail_after) without it.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from ksr.core.idle_wait import IdleWaitClock, read_when_idle
from ksr.core.server import Server
from tests.support import free_port, ksr_process, make_config, sip_request, write_script

LUA = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "OK")
end
"""


def run_with_clock(fn: Callable[[IdleWaitClock], Awaitable[None]]) -> IdleWaitClock:
    clock = IdleWaitClock()
    trio.run(fn, clock, clock=clock)
    return clock


def udp_pair() -> tuple[socket.socket, socket.socket]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    a.setblocking(False)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.bind(("127.0.0.1", 0))
    return a, b


def test_the_server_answers_datagrams_read_by_the_clock(tmp_path: Path) -> None:
    port = free_port()
    cfg = make_config(["sl"], listen=[f"udp:127.0.0.1:{port}"])

    ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ua.bind(("127.0.0.1", 0))
    ua.settimeout(5)

    def exchange(n: int) -> bytes:
        # a peer outside the run (a thread): its request arrives while every task waits
        req = sip_request(port=ua.getsockname()[1], call_id=f"idle-{n}")
        ua.sendto(req.encode(), ("127.0.0.1", port))
        return ua.recv(65535)

    async def main(clock: IdleWaitClock) -> None:
        server = Server(cfg, write_script(tmp_path, LUA))
        server.load_script()
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            assert clock.active  # this trio's runner and epoll were found
            for n in range(5):
                reply = await trio.to_thread.run_sync(exchange, n)
                assert reply.startswith(b"SIP/2.0 200")
                assert f"idle-{n}".encode() in reply
            nursery.cancel_scope.cancel()

    clock = run_with_clock(main)
    # every request arrived while all tasks waited: the clock read each one itself
    assert clock.wakeups >= 5
    assert not clock.active  # the listener's end took its socket out
    ua.close()


def test_trio_descriptors_are_served_while_the_clock_waits() -> None:
    watched, peer = udp_pair()
    left, right = socket.socketpair()

    async def main(clock: IdleWaitClock) -> None:
        with read_when_idle(watched.fileno(), lambda: None) as active:
            assert active
            got: list[bytes] = []

            async def reader() -> None:
                await trio.lowlevel.wait_readable(left)
                got.append(left.recv(100))

            with trio.fail_after(5):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader)
                    await trio.sleep(0.01)  # a deadline due while the clock waits
                    right.send(b"x")  # trio's own descriptor: the clock hands back
            assert got == [b"x"]

    run_with_clock(main)
    for s in (watched, peer, left, right):
        s.close()


def test_a_task_started_by_a_read_runs_at_once() -> None:
    watched, peer = udp_pair()

    async def main(clock: IdleWaitClock) -> None:
        done = trio.Event()
        async with trio.open_nursery() as nursery:

            async def handle() -> None:
                done.set()

            def read() -> None:
                watched.recv(100)
                nursery.start_soon(handle)  # runnable now: trio must run it

            with read_when_idle(watched.fileno(), read):
                peer.sendto(b"go", watched.getsockname())
                with trio.fail_after(5):
                    await done.wait()
        assert clock.wakeups == 1

    run_with_clock(main)
    watched.close()
    peer.close()


def test_a_deadline_moved_earlier_by_a_read_is_kept() -> None:
    watched, peer = udp_pair()

    async def main(clock: IdleWaitClock) -> None:
        scope = trio.CancelScope()

        def read() -> None:
            watched.recv(100)
            scope.deadline = trio.current_time() + 0.01  # as the timer service re-arms

        with read_when_idle(watched.fileno(), read):
            peer.sendto(b"go", watched.getsockname())
            with trio.fail_after(5):
                with scope:
                    await trio.sleep_forever()
        assert scope.cancelled_caught

    run_with_clock(main)
    watched.close()
    peer.close()


def test_a_failing_reader_is_logged_and_the_run_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    watched, peer = udp_pair()

    async def main(clock: IdleWaitClock) -> None:
        def read() -> None:
            watched.recv(100)
            raise RuntimeError("broken reader")

        with read_when_idle(watched.fileno(), read):
            peer.sendto(b"go", watched.getsockname())
            await trio.sleep(0.05)
        assert clock.wakeups == 1

    run_with_clock(main)
    assert "broken reader" in caplog.text
    watched.close()
    peer.close()


@pytest.mark.parametrize("idle_wait", ["true", "false"])
def test_ksr_run_answers_with_and_without_the_idle_wait(tmp_path: Path, idle_wait: str) -> None:
    script = write_script(tmp_path, LUA)
    with ksr_process(script, f"[core]\nidle_wait = {idle_wait}\n") as srv:
        ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ua.bind(("127.0.0.1", 0))
        ua.settimeout(5)
        for n in range(3):
            req = sip_request(port=ua.getsockname()[1], call_id=f"run-{n}")
            ua.sendto(req.encode(), ("127.0.0.1", srv["port"]))
            assert ua.recv(65535).startswith(b"SIP/2.0 200")
        ua.close()
        assert isinstance(srv["proc"], subprocess.Popen)
        assert srv["proc"].poll() is None


def test_a_descriptor_watched_later_is_read_a_moment_after_once_for_a_burst() -> None:
    """``read_later_when_idle``: the clock reads the descriptor ``delay`` after it became
    readable, once for all that arrived meanwhile, with no task waiting for it; again for the
    next burst; not after ``read`` says it is done (False)."""
    watched, peer = udp_pair()
    dest = watched.getsockname()
    calls: list[tuple[float, int]] = []

    def read() -> bool:
        got = 0
        while True:
            try:
                data = watched.recv(100)
            except BlockingIOError:
                break
            if data == b"end":
                calls.append((trio.current_time(), -1))
                return False
            got += 1
        calls.append((trio.current_time(), got))
        return True

    async def main(clock: IdleWaitClock) -> None:
        from ksr.core.idle_wait import read_later_when_idle

        with trio.fail_after(10), read_later_when_idle(watched.fileno(), read, 0.2) as idle:
            assert idle
            assert clock.active
            t0 = trio.current_time()
            for _ in range(3):
                peer.sendto(b"x", dest)
                await trio.sleep(0.03)
            await trio.sleep(0.4)  # every task sleeps: the clock waits, reads once
            assert [n for _, n in calls] == [3]
            assert 0.18 <= calls[0][0] - t0 <= 0.35
            peer.sendto(b"y", dest)
            await trio.sleep(0.4)
            assert [n for _, n in calls] == [3, 1]
            peer.sendto(b"end", dest)
            await trio.sleep(0.4)
            peer.sendto(b"z", dest)  # no longer watched: not read
            await trio.sleep(0.4)
            assert [n for _, n in calls] == [3, 1, -1]
        assert not clock.active

    run_with_clock(main)
    watched.close()
    peer.close()
