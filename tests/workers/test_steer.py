"""The kernel delivers each datagram to the worker owning its call (ksr/transport/steer.py):
real UDP sockets in one SO_REUSEPORT group with the steering program attached, and one sender
(by its address alone the kernel would give every datagram to one socket)."""

from __future__ import annotations

import random
import socket
import string
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ksr.sip.owner import HASH_BYTES, call_id_owner, message_owner
from ksr.transport.steer import MAX_INSNS, WINDOW, program
from ksr.transport.udp_group import UdpGroups
from tests.support import ksr_process, wait_steered, write_script
from tests.workers.test_handoff import request, stats


def message(call_id: str, pad: int = 0, name: str = "Call-ID", sep: str = " ") -> bytes:
    extra = "".join(f"X-Pad-{i}: {'p' * 40}\r\n" for i in range(pad))
    return (
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-s\r\n"
        f"{extra}From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\n"
        f"{name}:{sep}{call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@contextmanager
def group(workers: int) -> Iterator[UdpGroups]:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    g = UdpGroups([("127.0.0.1", port)], workers)
    try:
        yield g
    finally:
        g.close()


def deliver(g: UdpGroups, messages: list[bytes]) -> dict[bytes, int]:
    """Send every message from one socket; which worker's socket each one reached."""
    ip, port, socks = g.groups[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        for m in messages:
            sender.sendto(m, (ip, port))
        got: dict[bytes, int] = {}
        deadline = time.monotonic() + 5
        while len(got) < len(set(messages)) and time.monotonic() < deadline:
            for i, s in enumerate(socks):
                while True:
                    try:
                        got[s.recv(65535)] = i
                    except BlockingIOError:
                        break
            time.sleep(0.005)
    return got


def random_messages(n: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    chars = string.ascii_letters + string.digits + "-@.:_"
    out = []
    for _ in range(n):
        cid = "".join(rnd.choice(chars) for _ in range(rnd.randint(1, 3 * HASH_BYTES)))
        out.append(message(cid, rnd.randint(0, 25), sep=rnd.choice(["", " ", "  ", "\t", " \t"])))
    return out


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_each_datagram_reaches_the_worker_owning_it(workers: int) -> None:
    msgs = random_messages(400, workers)
    msgs += [message(f"{k}-4242@127.0.0.1") for k in range(1, 41)]  # sipp's Call-IDs
    with group(workers) as g:
        g.steer(set(range(workers)))
        assert g.steering
        got = deliver(g, msgs)
    assert len(got) == len(set(msgs))
    wrong = [m for m in msgs if got[m] != message_owner(m, workers)]
    assert not wrong, wrong[:3]
    shares = Counter(got.values())
    assert len(shares) == workers, shares
    assert min(shares.values()) > len(msgs) / workers / 2, shares


def test_what_the_program_cannot_read_goes_by_length() -> None:
    """The owner rule hands these over (ksr/core/handoff.py): the compact form, another
    spelling, a Call-ID past the searched bytes; a retransmission goes where its first did."""
    far = WINDOW // 50 + 2  # pad lines of ~50 bytes
    msgs = [
        message("compact-1", name="i"),
        message("compact-22", name="i"),
        message("lower-1", name="call-id"),
        message("lower-22", name="call-id"),
        message("far-1", pad=far),
        message("far-22", pad=far),
    ]
    with group(3) as g:
        g.steer({0, 1, 2})
        got = deliver(g, msgs)
    assert {m: len(m) % 3 for m in msgs} == got


def test_a_worker_that_is_down_gets_nothing() -> None:
    msgs = random_messages(200, 7)
    with group(3) as g:
        g.steer({0, 2})
        got = deliver(g, msgs)
    assert 1 not in got.values()
    for m in msgs:  # worker 1's share goes to the next live one
        assert got[m] == {0: 0, 1: 2, 2: 2}[message_owner(m, 3) or 0], m


def test_the_program_fits_for_any_worker_count() -> None:
    for workers in (1, 2, 7, 64):
        for live in ({0}, set(range(workers))):
            assert len(program(workers, live)) // 8 <= MAX_INSNS


def test_n2_messages_of_one_sender_reach_their_owner_without_a_hand_off(tmp_path: Path) -> None:
    """``ksr run -n 2``: one sender (one address), requests of 40 calls, each answered by the
    worker owning its Call-ID, none handed over."""
    script = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "pid=" .. KSR.pv.get("$pp"))
end
"""
    with ksr_process(
        write_script(tmp_path, script), 'loadmodule = ["sl", "jsonrpcs"]\n', extra_args=["-n", "2"]
    ) as k:
        wait_steered(k["log"], 2)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        me = s.getsockname()
        pids: dict[int, set[str]] = {0: set(), 1: set()}
        for i in range(40):
            cid = f"{i}-{me[1]}@127.0.0.1"
            via = f"SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK-st{i};rport"
            s.sendto(request("OPTIONS", "sip:x@127.0.0.1", via, cid, 1), ("127.0.0.1", k["port"]))
            head = s.recv(65535).split(b"\r\n", 1)[0].decode()
            pids[call_id_owner(cid, 2)].add(head)
        s.close()
        assert all(len(v) == 1 for v in pids.values()), pids
        assert pids[0] != pids[1], pids
        st = stats(k["rpc"], "handoff:")
        assert st.get("handoff:relayed", 0) == 0, st
