"""A server that falls behind sheds new calls and never relays a caller's retransmission as a
new branch.

The backlog is real: datagrams sent to ksr's UDP socket while the test holds the (single
threaded) trio loop wait in the kernel queue with the kernel's arrival time, exactly as under
load; core.shed_queue_age is lowered so a 0.15 s hold is "too old". A few old datagrams alone
(the process was not scheduled for a while) are no overload: only an age seen in a backlog (a
full batch read just before) sheds.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import trio

from ksr.sip.message import Request, parse_message_untrusted
from ksr.transport.udp import BATCH, SO_TIMESTAMPNS, queue_age
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

LUA = """
function ksr_request_route()
  if KSR.siputils.has_totag() > 0 then
    if KSR.rr.loose_route() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if KSR.tmx.t_precheck_trans() > 0 then KSR.tm.t_check_trans() return 1 end
  if KSR.tm.t_check_trans() == 0 then return 1 end
  KSR.rr.record_route()
  KSR.setdsturi("sip:127.0.0.1:" .. KSR.hdr.get("X-Callee"))
  KSR.tm.t_relay()
end
"""
MODULES = ["sl", "tm", "tmx", "rr", "siputils"]


def invite(n: int, ua_port: int, callee_port: int) -> bytes:
    return (
        f"INVITE sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{ua_port};branch=z9hG4bK-shed{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a{n}\r\nTo: <sip:bob@127.0.0.1>\r\n"
        f"Call-ID: shed-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{ua_port}>\r\n"
        f"X-Callee: {callee_port}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def answer(req: bytes, status: int, reason: str) -> bytes:
    """The callee's reply: Via/Record-Route/From/Call-ID/CSeq copied, To tagged."""
    msg = parse_message_untrusted(req)
    assert isinstance(msg, Request)
    keep = [
        h.line() for h in msg.headers if h.key in ("via", "record-route", "from", "call-id", "cseq")
    ]
    to = f"{msg.get('to')};tag=callee"
    lines = [f"SIP/2.0 {status} {reason}", *keep, f"To: {to}", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class BlockingPeer(UdpPeer):
    """A peer whose sends do not need the trio loop: they queue up in ksr's socket while the
    test holds the loop."""

    def __init__(self) -> None:
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.raw.bind(("127.0.0.1", 0))
        self.sock = trio.socket.from_stdlib_socket(self.raw)

    def send_now(self, data: bytes, addr: tuple[str, int]) -> None:
        self.raw.sendto(data, addr)


async def first_status(peer: UdpPeer, call_id: str) -> list[int]:
    """Statuses of the replies for call_id that come within a short while."""
    out = []
    with trio.move_on_after(0.4):
        while True:
            data = await peer.recv(1.0)
            if call_id.encode() in data and data.startswith(b"SIP/2.0 "):
                out.append(int(data[8:11]))
    return out


async def test_backlog_sheds_new_invites_and_absorbs_retransmissions(tmp_path: Path) -> None:
    cfg = make_config(MODULES, shed_queue_age=0.05)
    async with running_server(cfg, write_script(tmp_path, LUA)) as server:
        proxy = udp_addr(server)
        ua, callee = BlockingPeer(), await UdpPeer().bind()
        try:
            # a call starts while the server keeps up: relayed, the callee rings
            await ua.send(invite(1, ua.port, callee.port), proxy)
            fwd = await callee.recv()
            assert fwd.startswith(b"INVITE ")
            await callee.send(answer(fwd, 180, "Ringing"), proxy)
            assert 180 in await first_status(ua, "shed-1")
            # the server falls behind: a backlog (more datagrams than it reads in one go;
            # keepalives here), then the caller's retransmission of call 1 and a new call 2,
            # all waiting in its receive queue longer than shed_queue_age
            for _ in range(BATCH + 5):
                ua.send_now(b"\r\n", proxy)
            ua.send_now(invite(1, ua.port, callee.port), proxy)
            ua.send_now(invite(2, ua.port, callee.port), proxy)
            time.sleep(0.15)  # the loop is held: ksr cannot read (as when it is busy)
            # call 2 is refused at once; call 1's retransmission is absorbed (its 180 again)
            got = await first_status(ua, "shed-2")
            assert got == [503]
            assert server.stats.counter("core", "shed_requests").value == 1
            assert await callee.nothing(0.3), "nothing new reaches the callee"
            # once the queue is young again, new calls are served
            server.rx_age = 0.0
            await ua.send(invite(3, ua.port, callee.port), proxy)
            assert (await callee.recv()).startswith(b"INVITE ")
        finally:
            ua.close()
            callee.close()


async def test_old_datagrams_without_a_backlog_are_served(tmp_path: Path) -> None:
    cfg = make_config(MODULES, shed_queue_age=0.05)
    async with running_server(cfg, write_script(tmp_path, LUA)) as server:
        proxy = udp_addr(server)
        ua, callee = BlockingPeer(), await UdpPeer().bind()
        try:
            ua.send_now(invite(5, ua.port, callee.port), proxy)
            time.sleep(0.15)  # old, but alone in the queue: the process was just not running
            assert (await callee.recv()).startswith(b"INVITE ")
            assert server.stats.counter("core", "shed_requests").value == 0
        finally:
            ua.close()
            callee.close()


async def test_retransmitted_invite_after_the_200_is_not_a_new_branch(tmp_path: Path) -> None:
    """RFC 6026: the caller retransmits its INVITE until the 200 reaches it; one that arrives
    after ksr relayed the 200 is absorbed (the transaction waits in Accepted), never
    relayed as a second branch the callee would take for a new call."""
    async with running_server(make_config(MODULES), write_script(tmp_path, LUA)) as server:
        proxy = udp_addr(server)
        ua, callee = await UdpPeer().bind(), await UdpPeer().bind()
        try:
            await ua.send(invite(7, ua.port, callee.port), proxy)
            fwd = await callee.recv()
            await callee.send(answer(fwd, 200, "OK"), proxy)
            assert 200 in await first_status(ua, "shed-7")
            await ua.send(invite(7, ua.port, callee.port), proxy)
            assert await callee.nothing(0.3)
        finally:
            ua.close()
            callee.close()


def test_queue_age_reads_the_kernel_stamp() -> None:
    stamp = struct.pack("@qq", 1000, 250_000_000)
    anc = [(socket.SOL_SOCKET, SO_TIMESTAMPNS, stamp)]
    assert abs(queue_age(anc, lambda: 1000.75) - 0.5) < 1e-9
    assert queue_age([], lambda: 1000.75) == 0.0
    assert queue_age(anc, lambda: 999.0) == 0.0  # a clock step back is no backlog
