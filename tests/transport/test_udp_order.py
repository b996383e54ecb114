"""The order in which the UDP loop reads, syncs and routes a wake-up's datagrams.

The first datagram of a wake-up is routed before the socket is read on (at a low rate the
reply then leaves without waiting for the read that finds the queue empty), unless it is old
enough to be shed: then whether this is a backlog decides, which only the rest of the batch
tells. Either way the shared-table sync runs after a datagram is read and before it is routed
(read-your-writes across workers). What is still queued is read from the kernel (FIONREAD)
at each step, on the real socket the server reads.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time
from pathlib import Path
from typing import Any

import trio

from ksr.core.context import SocketInfo
from ksr.core.server import Server
from ksr.transport.udp_group import bind_udp
from tests.support import make_config, sip_request, write_script

LUA = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "OK")
end
"""


def options(n: int, port: int) -> bytes:
    return sip_request(port=port, branch=f"z9hG4bK-order{n}", call_id=f"order-{n}").encode()


async def events_of_one_wakeup(tmp_path: Path, hold: float, **core: Any) -> list[tuple[str, bool]]:
    """Two OPTIONS queued at once (and left ``hold`` seconds in the queue); what the server
    did, in order: ("sync" | the Call-ID routed, whether a datagram was still queued)."""
    sock = bind_udp("127.0.0.1", 0, False)
    port = sock.getsockname()[1]
    fd = sock.detach()  # the server's transport owns and closes it
    cfg = make_config(["sl"], listen=[f"udp:127.0.0.1:{port}"], **core)
    server = Server(cfg, write_script(tmp_path, LUA))
    server.load_script()
    server.udp_fds[("127.0.0.1", port)] = fd

    def queued() -> bool:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0] > 0

    events: list[tuple[str, bool]] = []
    route = server.receive

    def receive(data: bytes, ip: str, src_port: int, info: SocketInfo, conn_id: int = 0) -> None:
        events.append((data.split(b"Call-ID: ")[1].split(b"\r\n")[0].decode(), queued()))
        route(data, ip, src_port, info, conn_id)

    server.receive = receive  # type: ignore[assignment]
    server.sync_shared = lambda: events.append(("sync", queued()))
    ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ua.bind(("127.0.0.1", 0))
    ua.settimeout(2.0)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            # both queued while this task holds the loop: one wake-up reads them
            ua.sendto(options(1, ua.getsockname()[1]), ("127.0.0.1", port))
            ua.sendto(options(2, ua.getsockname()[1]), ("127.0.0.1", port))
            time.sleep(hold)
            got: list[bytes] = []
            with trio.fail_after(3):
                while len(got) < 2:
                    await trio.sleep(0.01)
                    ua.setblocking(False)
                    try:
                        got.append(ua.recv(65535))
                    except BlockingIOError:
                        pass
            assert all(g.startswith(b"SIP/2.0 200") for g in got)
            nursery.cancel_scope.cancel()
    finally:
        ua.close()
    return events


async def test_first_datagram_is_routed_before_the_queue_is_read_on(tmp_path: Path) -> None:
    events = await events_of_one_wakeup(tmp_path, 0.0)
    assert events == [
        ("sync", True),  # the first read, the second still queued
        ("order-1", True),
        ("sync", False),  # the second read before its sync
        ("order-2", False),
    ]


async def test_an_old_first_datagram_waits_for_the_batch(tmp_path: Path) -> None:
    # older than shed_queue_age: sheddable if the batch shows a backlog, so it is read first
    events = await events_of_one_wakeup(tmp_path, 0.1, shed_queue_age=0.05)
    assert events == [("sync", False), ("order-1", False), ("order-2", False)]


async def test_lone_datagrams_and_an_empty_one_are_all_answered(tmp_path: Path) -> None:
    """One datagram per wake-up (the low-rate case, where FIONREAD says nothing more is
    queued), and an empty datagram (FIONREAD says 0 for it too): nothing stalls."""
    sock = bind_udp("127.0.0.1", 0, False)
    port = sock.getsockname()[1]
    fd = sock.detach()
    cfg = make_config(["sl"], listen=[f"udp:127.0.0.1:{port}"])
    server = Server(cfg, write_script(tmp_path, LUA))
    server.load_script()
    server.udp_fds[("127.0.0.1", port)] = fd
    ua = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await ua.bind(("127.0.0.1", 0))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            for n in range(3):
                if n == 1:
                    await ua.sendto(b"", ("127.0.0.1", port))
                await ua.sendto(options(n, ua.getsockname()[1]), ("127.0.0.1", port))
                with trio.fail_after(3):
                    reply = await ua.recv(65535)
                assert reply.startswith(b"SIP/2.0 200")
                assert f"order-{n}".encode() in reply
            nursery.cancel_scope.cancel()
    finally:
        ua.close()
