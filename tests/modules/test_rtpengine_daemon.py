"""KSR.rtpengine against the real rtpengine daemon (userspace forwarding on loopback): the SDP
of a call through ksr is rewritten to the relay, RTP from the caller reaches the callee through
it, and the BYE deletes the session. Also: a dead relay, failover to a second relay, and a relay
answering garbage each cost the one request, with a log line and a SIP answer."""

from __future__ import annotations

import logging
import random
import re
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ksr.modules.rtpengine.bencode import decode_untrusted, encode
from tests.support import UdpPeer, free_port, make_config, running_server, udp_addr, write_script

RTPENGINE = shutil.which("rtpengine")
pytestmark = pytest.mark.skipif(
    RTPENGINE is None, reason="rtpengine-daemon is not installed (apt-get install rtpengine-daemon)"
)


class Daemon:
    def __init__(self, ng_port: int, port_min: int, port_max: int) -> None:
        self.ng_port, self.port_min, self.port_max = ng_port, port_min, port_max

    def command(self, body: dict[str, object]) -> dict[bytes, object]:
        """One ng command sent by the test itself (to look at the relay's sessions)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            # a new cookie each time: rtpengine answers a known cookie from its cache
            cookie = b"test%d" % random.randrange(1 << 30)
            s.sendto(cookie + b" " + encode(body), ("127.0.0.1", self.ng_port))
            data = s.recv(65536)
        value = decode_untrusted(data.partition(b" ")[2])
        assert isinstance(value, dict)
        return value


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    ng_port, cli_port = free_port(), free_port(socket.SOCK_STREAM)
    low = random.randrange(20000, 59000, 200)
    log = tmp_path / "rtpengine.log"
    args = [
        str(RTPENGINE),
        "--config-file=none",
        "--table=-1",
        "--interface=127.0.0.1",
        f"--listen-ng=127.0.0.1:{ng_port}",
        f"--listen-cli=127.0.0.1:{cli_port}",
        f"--port-min={low}",
        f"--port-max={low + 199}",
        "--delete-delay=0",
        "--foreground",
        "--log-stderr",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    d = Daemon(ng_port, low, low + 199)
    try:
        for _ in range(100):
            try:
                if d.command({"command": "ping"}).get(b"result") == b"pong":
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"rtpengine exited: {log.read_text()}")
        yield d
    finally:
        proc.terminate()
        proc.wait(5)


ROUTE = """
function ksr_request_route()
  if KSR.is_OPTIONS() then KSR.sl.sl_send_reply(200, "Alive") return end
  if KSR.siputils.has_totag() > 0 then
    if KSR.rr.loose_route() > 0 then
      if KSR.is_BYE() or KSR.is_ACK() then KSR.rtpengine.rtpengine_manage("") end
      KSR.tm.t_relay()
    end
    return
  end
  if KSR.is_INVITE() then KSR.rr.record_route() end
  if KSR.rtpengine.rtpengine_manage("replace-origin replace-session-connection") < 0 then
    KSR.sl.sl_send_reply(503, "Media Relay Unavailable")
    return
  end
  KSR.tm.t_on_reply("ksr_onreply_manage")
  KSR.pv.sets("$du", "sip:127.0.0.1:%d")
  KSR.tm.t_relay()
end

function ksr_onreply_manage()
  KSR.rtpengine.rtpengine_manage("replace-origin replace-session-connection")
end
"""


def sdp(port: int) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def invite(caller: int, call_id: str, body: str) -> str:
    return (
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{caller};branch=z9hG4bK-{call_id};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@127.0.0.1>;tag=alice-tag\r\n"
        "To: <sip:bob@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:alice@127.0.0.1:{caller}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )


def media_port(body: bytes) -> int:
    m = re.search(rb"m=audio (\d+) ", body)
    assert m, body
    return int(m.group(1))


def rtp_packet(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234ABCD) + bytes([seq % 256]) * 160


def config(relays: str, **extra: object) -> object:
    return make_config(
        modules=["sl", "tm", "rr", "siputils", "rtpengine"],
        modparam={"rtpengine": {"rtpengine_sock": relays, **extra}},
    )


async def test_call_media_goes_through_the_relay(daemon: Daemon, tmp_path: Path) -> None:
    caller, callee = await UdpPeer().bind(), await UdpPeer().bind()
    caller_rtp, callee_rtp = await UdpPeer().bind(), await UdpPeer().bind()
    script = write_script(tmp_path, ROUTE % callee.port)
    cfg = config(f"udp:127.0.0.1:{daemon.ng_port}")
    async with running_server(cfg, script) as server:  # type: ignore[arg-type]
        proxy = udp_addr(server)
        await caller.send(invite(caller.port, "rtp-call-1", sdp(caller_rtp.port)), proxy)
        from ksr.sip.message import Request, Response, parse_message_untrusted

        inv = parse_message_untrusted(await callee.recv())
        assert isinstance(inv, Request)
        assert inv.method == "INVITE"
        offered = media_port(inv.body)  # where the callee will receive the caller's media from
        assert daemon.port_min <= offered <= daemon.port_max
        assert inv.get("content-length") == str(len(inv.body))
        # the callee answers 200 with its SDP
        head = inv.to_bytes().decode().split("\r\n\r\n")[0].split("\r\n")
        keep = [
            h
            for h in head[1:]
            if h.split(":")[0].lower() in ("via", "from", "call-id", "cseq", "record-route")
        ]
        to = next(h for h in head if h.lower().startswith("to:")) + ";tag=bob-tag"
        body = sdp(callee_rtp.port)
        ok = "\r\n".join(
            ["SIP/2.0 200 OK", *keep, to, f"Contact: <sip:bob@127.0.0.1:{callee.port}>"]
            + ["Content-Type: application/sdp", f"Content-Length: {len(body)}", "", body]
        )
        await callee.send(ok, proxy)
        while True:
            rpl = parse_message_untrusted(await caller.recv())
            assert isinstance(rpl, Response)
            if rpl.status == 200:
                break
        answered = media_port(rpl.body)  # where the caller sends its media
        assert daemon.port_min <= answered <= daemon.port_max
        assert answered != offered
        query = daemon.command({"command": "query", "call-id": "rtp-call-1"})
        assert query[b"result"] == b"ok", query

        # RTP from the caller reaches the callee through the relay
        for seq in range(1, 6):
            await caller_rtp.send(rtp_packet(seq), ("127.0.0.1", answered))
        got = await callee_rtp.recv(timeout=3)
        assert got[12:] == rtp_packet(int(got[2:4].hex(), 16))[12:]
        assert len(got) == 172

        # BYE (in dialog, through the Record-Route) deletes the session
        rr = rpl.get("record-route")
        assert rr
        bye = (
            f"BYE sip:bob@127.0.0.1:{callee.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{caller.port};branch=z9hG4bK-bye1;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=alice-tag\r\n"
            "To: <sip:bob@127.0.0.1>;tag=bob-tag\r\nCall-ID: rtp-call-1\r\nCSeq: 2 BYE\r\n"
            f"Route: {rr}\r\nContent-Length: 0\r\n\r\n"
        )
        await caller.send(bye, proxy)
        got_bye = parse_message_untrusted(await callee.recv())
        assert isinstance(got_bye, Request)
        assert got_bye.method == "BYE"
        gone = daemon.command({"command": "query", "call-id": "rtp-call-1"})
        assert gone[b"result"] == b"error", gone


async def test_dead_relay_fails_over_and_is_disabled(
    daemon: Daemon, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = free_port()
    caller, callee = await UdpPeer().bind(), await UdpPeer().bind()
    script = write_script(tmp_path, ROUTE % callee.port)
    cfg = config(
        f"udp:127.0.0.1:{dead}=1000 udp:127.0.0.1:{daemon.ng_port}=1",
        rtpengine_tout_ms=100,
        rtpengine_retr=2,
    )
    async with running_server(cfg, script) as server:  # type: ignore[arg-type]
        with caplog.at_level(logging.ERROR, logger="ksr.rtpengine"):
            await caller.send(invite(caller.port, "rtp-failover", sdp(40000)), udp_addr(server))
            from ksr.sip.message import Request, parse_message_untrusted

            inv = parse_message_untrusted(await callee.recv(timeout=5))
        assert isinstance(inv, Request)
        assert daemon.port_min <= media_port(inv.body) <= daemon.port_max
        assert f"rtpengine udp:127.0.0.1:{dead}: no answer to offer" in caplog.text
        shown = server.rpc.call("rtpengine.show", ["all"])
        by_url = {r["url"]: r for r in shown}
        assert by_url[f"udp:127.0.0.1:{dead}"]["active"] == 0
        assert by_url[f"udp:127.0.0.1:{daemon.ng_port}"]["active"] == 1
        ping = server.rpc.call("rtpengine.ping", [f"udp:127.0.0.1:{daemon.ng_port}"])
        assert ping == {"url": f"udp:127.0.0.1:{daemon.ng_port}", "status": "success"}


def _garbage_relay() -> tuple[int, threading.Event]:
    """A relay that answers every command with its cookie and bytes that are not bencode."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = s.recvfrom(65536)
            except TimeoutError:
                continue
            s.sendto(data.partition(b" ")[0] + b" d6:result2:ok4:sdp", addr)
        s.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(s.getsockname()[1]), stop


async def test_relay_answering_garbage_costs_one_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port, stop = _garbage_relay()
    caller = await UdpPeer().bind()
    script = write_script(tmp_path, ROUTE % 9)
    try:
        async with running_server(config(f"udp:127.0.0.1:{port}"), script) as server:  # type: ignore[arg-type]
            with caplog.at_level(logging.ERROR, logger="ksr.rtpengine"):
                await caller.send(invite(caller.port, "rtp-garbage", sdp(40000)), udp_addr(server))
                rpl = await caller.recv_reply(timeout=5)
            assert (rpl.status, rpl.reason) == (503, "Media Relay Unavailable")
            assert "answered malformed answer" in caplog.text
            # the server goes on: an OPTIONS still gets its answer
            with trio.fail_after(3):
                await caller.send(
                    invite(caller.port, "rtp-garbage-2", sdp(40002)), udp_addr(server)
                )
                assert (await caller.recv_reply()).status == 503
    finally:
        stop.set()


def _slow_relay(delay: float) -> tuple[int, threading.Event]:
    """A relay that answers each offer correctly, ``delay`` seconds late."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = s.recvfrom(65536)
            except TimeoutError:
                continue
            cookie, _, body = data.partition(b" ")
            stop.wait(delay)
            sdp_in = decode_untrusted(body)[b"sdp"]  # type: ignore[index]
            answer = {"result": "ok", "sdp": sdp_in.replace(b"m=audio 40000", b"m=audio 41000")}
            s.sendto(cookie + b" " + encode(answer), addr)
        s.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(s.getsockname()[1]), stop


async def test_a_route_waiting_for_the_relay_does_not_hold_the_worker(tmp_path: Path) -> None:
    """While an INVITE's offer waits for a slow relay, an OPTIONS from someone else is answered
    first (the waiting route is suspended, the worker goes on)."""
    port, stop = _slow_relay(delay=1.0)
    caller, callee, prober = [await UdpPeer().bind() for _ in range(3)]
    script = write_script(tmp_path, ROUTE % callee.port)
    try:
        async with running_server(config(f"udp:127.0.0.1:{port}"), script) as server:  # type: ignore[arg-type]
            proxy = udp_addr(server)
            await caller.send(invite(caller.port, "rtp-slow", sdp(40000)), proxy)
            await trio.sleep(0.1)  # the offer is on its way to the relay
            await prober.send(
                "OPTIONS sip:ksr@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{prober.port};branch=z9hG4bK-probe\r\n"
                "From: <sip:p@127.0.0.1>;tag=p\r\nTo: <sip:ksr@127.0.0.1>\r\n"
                "Call-ID: rtp-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n",
                proxy,
            )
            order: list[str] = []

            async def probe() -> None:
                assert (await prober.recv_reply(timeout=5)).reason == "Alive"
                order.append("options answered")

            async def relayed() -> None:
                from ksr.sip.message import Request, parse_message_untrusted

                inv = parse_message_untrusted(await callee.recv(timeout=5))
                assert isinstance(inv, Request)
                assert media_port(inv.body) == 41000  # the relay's SDP
                order.append("invite relayed")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe)
                nursery.start_soon(relayed)
            assert order == ["options answered", "invite relayed"]
    finally:
        stop.set()
