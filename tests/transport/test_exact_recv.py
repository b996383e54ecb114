"""Datagrams are copied out of one reusable buffer as bytes of their own size: a later
datagram never changes an earlier one, and the largest UDP datagram arrives whole."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest

from ksr.transport.exact_recv import ExactReceiver


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    try:
        yield rx, tx
    finally:
        rx.close()
        tx.close()


def test_each_datagram_is_its_own_bytes(pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    r = ExactReceiver(65535)
    tx.send(b"OPTIONS first")
    tx.send(b"second")
    first, addr = r.recvfrom(rx)
    second, _ = r.recvfrom(rx)
    assert (first, second) == (b"OPTIONS first", b"second")
    assert type(first) is bytes
    assert addr == tx.getsockname()
    # a fresh object of the datagram's size, not a window on the shared buffer
    assert sys.getsizeof(first) < sys.getsizeof(b"") + 64


def test_largest_datagram_and_ancillary_data(pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    r = ExactReceiver(65535)
    big = bytes(range(256)) * 255 + b"end"  # 65,283 bytes
    tx.send(big)
    tx.send(b"x")
    data, anc, addr = r.recvmsg(rx, socket.CMSG_SPACE(16))
    assert data == big
    assert anc == []
    assert addr == tx.getsockname()
    assert r.recvfrom(rx)[0] == b"x"
    assert data == big  # unchanged by the read after it


def test_recv_on_a_seqpacket_pair() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        r = ExactReceiver(1 << 18)
        a.send(b"hand-off one")
        a.send(b"two")
        assert [r.recv(b), r.recv(b)] == [b"hand-off one", b"two"]
