"""siptrace: the HEPv3 codec (sans-IO) and the module's modes through a real server, received
by a capture socket of the test (UDP and TCP). tests/modules/test_siptrace_receivers.py checks
the same packets with decoders nobody here wrote (Kamailio's sipcapture, hep-js)."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
import trio

from ksr.sip import hep
from ksr.sip.hep import HepError, HepPacket, decode_untrusted, encode
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

SCRIPT = """
function ksr_request_route()
  local mode = KSR.hdr.get("X-Trace")
  if mode == "hlog" then
    KSR.siptrace.hlog("a log line for Homer")
  elseif mode == "plain" then
    KSR.siptrace.sip_trace()
  elseif mode == "cid" then
    KSR.siptrace.sip_trace_dst_cid("", "corr-" .. KSR.pv.get("$ci"))
  elseif mode then
    KSR.siptrace.sip_trace_mode(mode)
  end
  KSR.sl.sl_send_reply(200, "OK")
end
"""


# -- the codec ------------------------------------------------------------------------------------
def packet(**kw: object) -> HepPacket:
    base: dict[str, object] = {
        "src_ip": "192.0.2.1",
        "src_port": 5080,
        "dst_ip": "192.0.2.2",
        "dst_port": 5060,
        "payload": b"OPTIONS sip:x SIP/2.0\r\n\r\n",
        "time_sec": 1_700_000_000,
        "time_usec": 123_456,
        "capture_id": 2001,
    }
    base.update(kw)
    return HepPacket(**base)  # type: ignore[arg-type]


def test_encode_layout() -> None:
    data = encode(packet())
    assert data[:4] == b"HEP3"
    assert struct.unpack("!H", data[4:6])[0] == len(data)
    # the first chunk: vendor 0, type 1 (IP family), length 7, AF_INET
    assert data[6:13] == b"\x00\x00\x00\x01\x00\x07\x02"
    assert data.endswith(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    assert b"\x00\x00\x00\x0c\x00\x0a" + struct.pack("!I", 2001) in data  # capture id chunk


@pytest.mark.parametrize(
    ("src", "dst", "out_src", "out_dst"),
    [
        ("192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.2"),
        ("2001:db8::1", "[2001:db8::2]", "2001:db8::1", "2001:db8::2"),
        ("192.0.2.1", "2001:db8::2", "::ffff:c000:201", "2001:db8::2"),  # one family
    ],
)
def test_round_trip(src: str, dst: str, out_src: str, out_dst: str) -> None:
    p = packet(
        src_ip=src, dst_ip=dst, ip_proto=hep.IPPROTO_TCP, correlation_id=b"c1", auth_key=b"k"
    )
    got, size = decode_untrusted(encode(p) + b"HEP3 more")
    assert size == len(encode(p))
    assert (got.src_ip, got.dst_ip) == (out_src, out_dst)
    assert (got.src_port, got.dst_port, got.ip_proto) == (5080, 5060, hep.IPPROTO_TCP)
    assert (got.time_sec, got.time_usec, got.capture_id) == (1_700_000_000, 123_456, 2001)
    assert (got.correlation_id, got.auth_key, got.payload) == (b"c1", b"k", p.payload)


@pytest.mark.parametrize(
    "data",
    [b"", b"HEP2\x00\x06", b"HEP3\x00\x05", b"HEP3\x00\x10\x00\x00\x00\x01\x00\x02", b"x" * 40],
)
def test_decode_refuses_garbage(data: bytes) -> None:
    with pytest.raises(HepError):
        decode_untrusted(data)


def test_encode_refuses_names_and_giants() -> None:
    with pytest.raises(HepError):
        encode(packet(src_ip="host.example.com"))
    with pytest.raises(HepError):
        encode(packet(payload=b"x" * 70_000))


# -- the module ---------------------------------------------------------------------------------
class Capture:
    """A capture server: HEP over UDP and over TCP, decoded with ksr.sip.hep."""

    def __init__(self) -> None:
        self.udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self.got: list[HepPacket] = []
        self.raw: list[bytes] = []
        self.tcp_port = 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.udp.bind(("127.0.0.1", 0))
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.tcp_port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as n:
            n.start_soon(self._udp)
            n.start_soon(trio.serve_listeners, self._tcp, listeners)
            task_status.started()

    async def _udp(self) -> None:
        while True:
            data, _ = await self.udp.recvfrom(65535)
            self.raw.append(bytes(data))
            self.got.append(decode_untrusted(bytes(data))[0])

    async def _tcp(self, stream: trio.SocketStream) -> None:
        buf = b""
        async for chunk in stream:
            buf += chunk
            while len(buf) >= 6 and len(buf) >= struct.unpack("!H", buf[4:6])[0]:
                p, size = decode_untrusted(buf)
                self.got.append(p)
                buf = buf[size:]

    @property
    def udp_port(self) -> int:
        return int(self.udp.getsockname()[1])

    async def wait(self, n: int, timeout: float = 5) -> list[HepPacket]:
        with trio.fail_after(timeout):
            while len(self.got) < n:
                await trio.sleep(0.01)
        await trio.sleep(0.1)  # and nothing more
        return self.got


def options(port: int, call_id: str, cseq: int = 1, trace: str | None = None) -> str:
    extra = f"X-Trace: {trace}\r\n" if trace else ""
    return (
        f"OPTIONS sip:ksr@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call_id}-{cseq}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=f\r\nTo: <sip:ksr@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    )


async def traced_run(
    tmp_path: Path, requests: list[tuple[str, int, str | None]], **params: object
) -> tuple[list[HepPacket], int, tuple[str, int]]:
    cap = Capture()
    async with trio.open_nursery() as n:
        await n.start(cap.run)
        uri = params.pop("uri", None) or f"sip:127.0.0.1:{cap.udp_port}"
        if uri == "tcp":
            uri = f"sip:127.0.0.1:{cap.tcp_port};transport=tcp"
        siptrace = {
            "duplicate_uri": uri,
            "hep_mode_on": 1,
            "hep_version": 3,
            "hep_capture_id": 2001,
            "trace_on": 1,
            **params,
        }
        cfg = make_config(["sl", "siptrace"], {"siptrace": siptrace})
        async with running_server(cfg, write_script(tmp_path, SCRIPT)) as server:
            peer = await UdpPeer().bind()
            for call_id, cseq, trace in requests:
                await peer.send(options(peer.port, call_id, cseq, trace), udp_addr(server))
                assert (await peer.recv_reply()).status == 200
            await trio.sleep(0.3)
            got = list(cap.got)
            port, addr = peer.port, udp_addr(server)
            peer.close()
        n.cancel_scope.cancel()
    return got, port, addr


async def test_message_mode_copies_the_request_only(tmp_path: Path) -> None:
    before = time.time()
    got, port, (ip, sip_port) = await traced_run(tmp_path, [("m-1", 1, "m")])
    assert len(got) == 1
    p = got[0]
    assert (p.src_ip, p.src_port, p.dst_ip, p.dst_port) == ("127.0.0.1", port, ip, sip_port)
    assert (p.ip_proto, p.proto_type, p.capture_id) == (hep.IPPROTO_UDP, hep.PROTO_SIP, 2001)
    assert before - 1 <= p.time_sec + p.time_usec / 1e6 <= time.time() + 1
    assert p.payload == options(port, "m-1", 1, "m").encode()


@pytest.mark.parametrize("uri", ["", "tcp"])
async def test_transaction_mode_copies_the_reply_too(tmp_path: Path, uri: str) -> None:
    got, port, (ip, sip_port) = await traced_run(
        tmp_path, [("t-1", 1, "t"), ("t-1", 2, None)], uri=uri
    )
    assert [p.payload.split(b"\r\n", 1)[0] for p in got] == [
        b"OPTIONS sip:ksr@127.0.0.1 SIP/2.0",
        b"SIP/2.0 200 OK",
    ]
    out = got[1]
    assert (out.src_ip, out.src_port, out.dst_ip, out.dst_port) == (ip, sip_port, "127.0.0.1", port)
    assert b"CSeq: 1 OPTIONS" in out.payload  # the second transaction (CSeq 2) is not traced


async def test_dialog_mode_follows_the_call_id(tmp_path: Path) -> None:
    got, _, _ = await traced_run(tmp_path, [("d-1", 1, "d"), ("d-1", 2, None), ("other", 1, None)])
    assert [(b"CSeq: 2" in p.payload, p.payload[:3]) for p in got] == [
        (False, b"OPT"),
        (False, b"SIP"),
        (True, b"OPT"),
        (True, b"SIP"),
    ]


async def test_trace_mode_1_copies_everything(tmp_path: Path) -> None:
    got, _, _ = await traced_run(tmp_path, [("a", 1, None), ("b", 1, None)], trace_mode=1)
    assert len(got) == 4


async def test_nothing_while_trace_on_is_0(tmp_path: Path) -> None:
    got, _, _ = await traced_run(
        tmp_path, [("a", 1, "t"), ("b", 1, None)], trace_on=0, trace_mode=1
    )
    assert got == []


async def test_correlation_id_auth_key_and_hlog(tmp_path: Path) -> None:
    got, _, _ = await traced_run(
        tmp_path, [("c-1", 1, "cid"), ("h-1", 1, "hlog")], auth_key="sekrit"
    )
    assert [(p.correlation_id, p.auth_key, p.proto_type) for p in got] == [
        (b"corr-c-1", b"sekrit", hep.PROTO_SIP),
        (b"h-1", b"sekrit", hep.PROTO_LOG),
    ]
    assert got[1].payload == b"a log line for Homer"


async def test_plain_sip_mode(tmp_path: Path) -> None:
    cap_sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await cap_sock.bind(("127.0.0.1", 0))
    uri = f"sip:127.0.0.1:{cap_sock.getsockname()[1]}"
    cfg = make_config(["sl", "siptrace"], {"siptrace": {"duplicate_uri": uri, "trace_on": 1}})
    async with running_server(cfg, write_script(tmp_path, SCRIPT)) as server:
        peer = await UdpPeer().bind()
        await peer.send(options(peer.port, "p-1", 1, "plain"), udp_addr(server))
        with trio.fail_after(3):
            data, _ = await cap_sock.recvfrom(65535)
        assert data == options(peer.port, "p-1", 1, "plain").encode()
        peer.close()
    cap_sock.close()


async def test_status_rpc_and_bad_settings(tmp_path: Path) -> None:
    from ksr.core.config import ConfigError
    from ksr.core.server import Server

    cfg = make_config(["sl", "siptrace"], {"siptrace": {"duplicate_uri": "sip:127.0.0.1:9"}})
    async with running_server(cfg, write_script(tmp_path, SCRIPT)) as server:
        call = server.rpc.handle
        ask = {"jsonrpc": "2.0", "id": 1, "method": "siptrace.status"}
        assert call({**ask, "params": ["check"]})["result"] == "Disabled"
        assert call({**ask, "params": ["on"]})["result"] == "Enabled"
        assert "error" in call({**ask, "params": ["maybe"]})
    for bad in (
        {"hep_mode_on": 1, "hep_version": 2},
        {"duplicate_uri": "sip:capture.example.com:9060"},
        {"duplicate_uri": "sip:127.0.0.1:9060;transport=sctp"},
    ):
        with pytest.raises(ConfigError):
            Server(make_config(["sl", "siptrace"], {"siptrace": bad}), None)


RELAY = """
function ksr_request_route()
  KSR.siptrace.sip_trace_mode("t")
  KSR.setdsturi(KSR.hdr.get("X-Next"))
  KSR.tm.t_relay()
end
"""


async def test_transaction_mode_on_a_relayed_request(tmp_path: Path) -> None:
    """t_relay: the request in, its branch out, the callee's reply in, the reply out."""
    cap = Capture()
    async with trio.open_nursery() as n:
        await n.start(cap.run)
        siptrace = {
            "duplicate_uri": f"sip:127.0.0.1:{cap.udp_port}",
            "hep_mode_on": 1,
            "hep_version": 3,
            "trace_on": 1,
        }
        cfg = make_config(["sl", "tm", "siptrace"], {"siptrace": siptrace})
        async with running_server(cfg, write_script(tmp_path, RELAY)) as server:
            caller, callee = await UdpPeer().bind(), await UdpPeer().bind()
            ip, port = udp_addr(server)
            req = options(caller.port, "relay-1").replace(
                "Content-Length", f"X-Next: sip:127.0.0.1:{callee.port}\r\nContent-Length"
            )
            await caller.send(req, (ip, port))
            branch = (await callee.recv()).decode()
            assert branch.startswith("OPTIONS ")
            vias = "".join(
                line + "\r\n" for line in branch.split("\r\n") if line.startswith("Via:")
            )
            answer = (
                "SIP/2.0 200 OK\r\n" + vias + "From: <sip:a@127.0.0.1>;tag=f\r\n"
                "To: <sip:ksr@127.0.0.1>;tag=t\r\nCall-ID: relay-1\r\nCSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            await callee.send(answer, (ip, port))
            assert (await caller.recv_reply()).status == 200
            got = await cap.wait(4)
            a, b = caller.port, callee.port
            caller.close()
            callee.close()
        n.cancel_scope.cancel()
    words = [p.payload.split(b" ", 2) for p in got]
    hops = [
        (w[0] if w[0] != b"SIP/2.0" else w[1], p.src_port, p.dst_port)
        for w, p in zip(words, got, strict=True)
    ]
    assert hops == [
        (b"OPTIONS", a, port),
        (b"OPTIONS", port, b),
        (b"200", b, port),
        (b"200", port, a),
    ]


def test_traced_set_dialog_ends_after_the_bye() -> None:
    from ksr.modules.siptrace.traced import AFTER_BYE, TRANSACTION_TTL, TracedSet, keys_of

    t = TracedSet()
    t.add_dialog("call-1", "sip:cap", 0)
    t.add_transaction("call-2", 7, "sip:cap2", 0)
    assert t.match("call-1", 5, "INVITE", 0, 10) == "sip:cap"
    assert t.match("call-1", 6, "BYE", 200, 20) == "sip:cap"  # the BYE's 200: a few s more
    assert t.match("call-1", 6, "BYE", 200, 20 + AFTER_BYE - 1) == "sip:cap"
    assert t.match("call-1", 6, "BYE", 0, 20 + AFTER_BYE + 1) is None
    assert t.match("call-2", 7, "CANCEL", 0, 1) == "sip:cap2"
    assert t.match("call-2", 8, "INVITE", 0, 1) is None  # another transaction of the call
    assert t.match("call-2", 7, "ACK", 0, TRANSACTION_TTL + 1) is None
    raw = b"SIP/2.0 180 Ringing\r\ni: abc@h\r\nCSeq:  12 INVITE\r\n\r\nbody\r\nCSeq: 1 BYE\r\n"
    assert keys_of(raw) == ("abc@h", 12, "INVITE", 180)
    assert keys_of(b"garbage") is None
