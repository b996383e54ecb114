"""The hand-off wire format (ksr/core/handoff_codec.py) and the remote connection table, without
sockets: every frame kind round-trips byte-exact, and malformed frames raise FrameError."""

from __future__ import annotations

import pytest

from ksr.core import handoff_codec as codec
from ksr.core.handoff_conns import REMOTE_BASE, RemoteConns


def test_message_frame_round_trip() -> None:
    meta = codec.msg_meta("tcp", "127.0.0.1", 5060, "192.0.2.7")
    data = codec.encode(codec.OP_MSG, 1, 40000, 77, meta, b"INVITE sip:x SIP/2.0\r\n\r\n")
    f = codec.decode(data)
    assert (f.op, f.origin, f.port, f.conn_id) == (codec.OP_MSG, 1, 40000, 77)
    assert f.payload == b"INVITE sip:x SIP/2.0\r\n\r\n"
    assert codec.parse_msg_meta(f.meta) == ("tcp", "127.0.0.1", 5060, "192.0.2.7", 0.0)
    again = codec.encode(f.op, f.origin, f.port, f.conn_id, f.meta, f.payload)
    assert again == data


def test_message_meta_carries_the_queue_age() -> None:
    meta = codec.msg_meta("udp", "127.0.0.1", 5060, "192.0.2.7", 0.3504)
    assert codec.parse_msg_meta(meta) == ("udp", "127.0.0.1", 5060, "192.0.2.7", 0.35)
    with pytest.raises(codec.FrameError):
        codec.parse_msg_meta("udp 127.0.0.1 5060 192.0.2.7 -1")


def test_send_frame_and_ipv6_hosts() -> None:
    f = codec.decode(codec.encode(codec.OP_SEND, 0, 0, 5, codec.send_meta("ws", "::1", 80), b"x"))
    assert codec.parse_send_meta(f.meta) == ("ws", "::1", 80)
    assert f.conn_id == 5


def test_rpc_request_and_a_reply_in_pieces_out_of_order() -> None:
    meta, payload = codec.rpc_request(9, "dlg.list", ["a", 1])
    f = codec.decode(codec.encode(codec.OP_RPC, 2, 0, 0, meta, payload))
    rid, req = codec.parse_rpc_request(f)
    assert rid == 9
    assert req["method"] == "dlg.list"
    assert req["params"] == ["a", 1]
    reply = {"jsonrpc": "2.0", "result": ["x" * 1000] * 150, "id": 9}  # ~150 kB: 3 pieces
    pieces = codec.rpc_reply_pieces(9, reply)
    assert len(pieces) == 3
    got = codec.ReplyPieces()
    done = []
    for meta, piece in reversed(pieces):
        rid, n, total = codec.parse_reply_meta(meta)
        done.append(got.add(n, total, piece))
    assert done == [False, False, True]
    assert got.reply() == reply


def test_notice_frame_keeps_its_topic() -> None:
    f = codec.decode(codec.encode(codec.OP_NOTE, 3, 0, 0, "auth.nc", b"\x00\xff"))
    assert (f.meta, f.payload, f.origin) == ("auth.nc", b"\x00\xff", 3)


def test_batches_pack_frames_in_order_and_split_at_the_limit() -> None:
    meta = codec.msg_meta("udp", "127.0.0.1", 5060, "192.0.2.7")
    frames = [codec.encode(codec.OP_MSG, 1, 5000 + i, 0, meta, b"x" * (i * 500)) for i in range(40)]
    assert codec.batches(1, frames[:1]) == [(frames[0], 1)]  # a lone frame goes as itself
    out = codec.batches(1, frames)
    assert len(out) > 1  # ~390 kB do not fit one datagram
    assert all(len(d) <= codec.BATCH_MAX + codec.HEAD.size for d, _ in out)
    got: list[bytes] = []
    for dgram, count in out:
        f = codec.decode(dgram)
        inner = codec.unbatch(f.payload) if f.op == codec.OP_BATCH else [dgram]
        assert len(inner) == count
        got += inner
    assert got == frames
    assert [codec.decode(g).port for g in got] == [5000 + i for i in range(40)]


@pytest.mark.parametrize("payload", [b"\x00\x00", b"\x00\x00\x00\x09abc", b"\x00\x00\x00\x01a\x00"])
def test_a_cut_batch_raises(payload: bytes) -> None:
    with pytest.raises(codec.FrameError):
        codec.unbatch(payload)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00",  # shorter than the head
        codec.HEAD.pack(1, 0, 0, 0, 50) + b"abc",  # meta longer than the frame
        codec.HEAD.pack(1, 0, 0, 0, 2) + b"\xff\xfe",  # meta not UTF-8
    ],
)
def test_malformed_frames(data: bytes) -> None:
    with pytest.raises(codec.FrameError):
        codec.decode(data)


@pytest.mark.parametrize(
    ("parse", "meta"),
    [
        (codec.parse_msg_meta, "udp 127.0.0.1 x 1.2.3.4"),
        (codec.parse_msg_meta, "udp 127.0.0.1 5060"),
        (codec.parse_send_meta, "tcp host"),
        (codec.parse_reply_meta, "1 3 3"),  # piece number past the count
        (codec.parse_reply_meta, "1 a 3"),
    ],
)
def test_malformed_meta(parse: object, meta: str) -> None:
    with pytest.raises(codec.FrameError):
        parse(meta)  # type: ignore[operator]


def test_remote_connections_by_id_and_by_peer_with_a_limit() -> None:
    t = RemoteConns(limit=2)
    a = t.pseudo(1, 10, "192.0.2.1", 5060)
    assert a >= REMOTE_BASE
    assert t.pseudo(1, 10, "192.0.2.1", 5060) == a  # the same connection again
    assert t.target(a) == (1, 10)
    assert t.by_address("192.0.2.1", 5060) == (1, 10)
    b = t.pseudo(0, 11, "192.0.2.1", 5060)  # the peer reconnected through another worker
    assert b != a
    assert t.by_address("192.0.2.1", 5060) == (0, 11)
    t.pseudo(1, 12, "192.0.2.2", 5060)
    t.pseudo(1, 13, "192.0.2.3", 5060)  # over the limit: the oldest are forgotten
    assert t.target(a) is None
    assert t.target(b) is None
    assert t.by_address("192.0.2.1", 5060) is None
    assert len(t.by_id) == 2
