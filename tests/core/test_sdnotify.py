"""systemd's Type=notify protocol, with a real unix datagram socket standing in for systemd:
READY=1 once ksr answers, RELOADING=1/READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM;
with -n 2 only the supervisor speaks (as NotifyAccess=main wants), once both workers serve."""

from __future__ import annotations

import signal
import socket
import struct
import time
from pathlib import Path

import pytest

from ksr.core import sdnotify
from tests.support import ksr_process, sip_request, write_script

SCRIPT = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "{reason}")
end
"""


class FakeSystemd:
    """The NOTIFY_SOCKET end: each datagram with the pid the kernel vouches for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))

    def next(self, timeout: float = 30) -> tuple[dict[str, str], int]:
        self.sock.settimeout(timeout)
        data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        pid = next(
            struct.unpack("3i", d)[0]
            for level, kind, d in anc
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
        )
        return sdnotify.parse(data), pid

    def pending(self) -> list[dict[str, str]]:
        self.sock.setblocking(False)
        try:
            return sdnotify.receive(self.sock)
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()


def options_reason(port: int, n: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        req = sip_request("OPTIONS", f"sip:127.0.0.1:{port}", 9, f"z9hG4bK-n{n}", f"n{n}")
        s.sendto(req.encode(), ("127.0.0.1", port))
        return s.recv(65535).decode().split("\r\n", 1)[0]


def no_wait(port: int, proc: object, log: Path) -> None:
    pass  # READY=1 is what this test waits for


def test_message_and_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sdnotify.message(READY=1, STATUS="up") == b"READY=1\nSTATUS=up\n"
    name = f"@ksr-test-notify-{time.monotonic_ns()}"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(sdnotify.address(name))
    rx.settimeout(5)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", name)
        assert sdnotify.stopping()
        assert rx.recv(100) == b"STOPPING=1\n"
        monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
        assert not sdnotify.ready()  # logged, not raised
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert not sdnotify.ready()
    finally:
        rx.close()


@pytest.mark.parametrize("children", [1, 2])
def test_ready_reload_stop(tmp_path: Path, children: int) -> None:
    systemd = FakeSystemd(tmp_path / "notify")
    script = write_script(tmp_path, SCRIPT.format(reason="v1"))
    try:
        with ksr_process(
            script,
            'loadmodule = ["sl"]\n',
            extra_args=["-n", str(children)],
            ready=no_wait,
            env={"NOTIFY_SOCKET": str(systemd.path)},
        ) as k:
            fields, pid = systemd.next()
            assert fields["READY"] == "1", fields
            assert pid == k["proc"].pid  # the main process, also with workers
            assert "listening on" in fields["STATUS"]
            # ready means serving: every worker answers at once
            assert {options_reason(k["port"], i) for i in range(6)} == {"SIP/2.0 200 v1"}

            script.write_text(SCRIPT.format(reason="v2"))
            k["proc"].send_signal(signal.SIGHUP)
            fields, pid = systemd.next()
            assert fields["RELOADING"] == "1", fields
            assert int(fields["MONOTONIC_USEC"]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            assert pid == k["proc"].pid
            fields, pid = systemd.next()
            assert fields == {"READY": "1"}
            assert pid == k["proc"].pid
            assert {options_reason(k["port"], 10 + i) for i in range(6)} == {"SIP/2.0 200 v2"}

            k["proc"].send_signal(signal.SIGTERM)
            assert k["proc"].wait(15) == 0
            fields, pid = systemd.next(5)
            assert fields == {"STOPPING": "1"}
            assert pid == k["proc"].pid
            assert systemd.pending() == []  # nothing else: no second READY, no worker's own
    finally:
        systemd.close()
