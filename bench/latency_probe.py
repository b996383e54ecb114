"""Response times in microseconds, one request at a time over UDP (sipp's rtd counts whole
milliseconds, too coarse for a proxy that answers in under one).

``register_latency`` sends the anchor's REGISTER (as reg.xml writes it) and times each until its
final reply; ``invite_latency`` places calls through the proxy to a callee that answers at once
(uas-latency.xml), times INVITE→200, then sends the ACK and BYE along the route set like
uac.xml. Both return the samples in µs; the client's own Python time is in every sample, for
both servers alike.
"""

from __future__ import annotations

import socket
import time

SDP = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class Probe:
    def __init__(self, server_port: int, timeout: float = 2.0) -> None:
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(timeout)
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()

    def final_reply(self, call_id: str, cseq: str) -> tuple[int, bytes]:
        """(ns when it came, the reply) of the first final reply to the request ``cseq`` ("1
        INVITE") of call_id; 1xx and retransmitted earlier replies are skipped."""
        want_cid, want_cseq = call_id.encode(), f"CSeq: {cseq}\r\n".encode()
        while True:
            data = self.sock.recv(65535)
            now = time.perf_counter_ns()
            if (
                data.startswith(b"SIP/2.0 ")
                and data[8:9] != b"1"
                and want_cid in data
                and want_cseq in data
            ):
                return now, data

    def via(self, branch: str) -> str:
        return f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-{branch}"


def _headers(reply: bytes, name: str) -> list[str]:
    head = reply.split(b"\r\n\r\n", 1)[0].decode()
    want = name.lower() + ":"
    return [
        ln.split(":", 1)[1].strip() for ln in head.split("\r\n")[1:] if ln.lower().startswith(want)
    ]


def register_latency(server_port: int, count: int, rate: float) -> list[float]:
    p = Probe(server_port)
    out: list[float] = []
    try:
        for n in range(count):
            user = f"u{n % 10000:05d}"
            cid = f"lat-reg-{n}-{p.port}"
            msg = (
                f"REGISTER sip:127.0.0.1:{server_port} SIP/2.0\r\n{p.via(cid)}\r\n"
                f"From: <sip:{user}@127.0.0.1>;tag=lat{n}\r\nTo: <sip:{user}@127.0.0.1>\r\n"
                f"Call-ID: {cid}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:5099>\r\n"
                "Expires: 3600\r\nMax-Forwards: 70\r\nUser-Agent: sipp-anchor\r\nContent-Length: 0\r\n\r\n"
            )
            t0 = time.perf_counter_ns()
            p.sock.sendto(msg.encode(), p.server)
            t1, reply = p.final_reply(cid, "1 REGISTER")
            if reply.startswith(b"SIP/2.0 200"):
                out.append((t1 - t0) / 1000)
            time.sleep(max(0.0, 1 / rate - (t1 - t0) / 1e9))
    finally:
        p.close()
    return out


def invite_latency(server_port: int, callee: str, count: int, rate: float) -> list[float]:
    p = Probe(server_port)
    out: list[float] = []
    me = f"127.0.0.1:{p.port}"
    try:
        for n in range(count):
            cid = f"lat-inv-{n}-{p.port}"
            common = f'From: "sipp" <sip:caller@{me}>;tag=lat{n}\r\nCall-ID: {cid}\r\nContact: <sip:caller@{me}>\r\n'
            invite = (
                f"INVITE sip:{callee}@127.0.0.1:{server_port} SIP/2.0\r\n{p.via(cid + 'i')}\r\n{common}"
                f"To: <sip:{callee}@127.0.0.1:{server_port}>\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                f"Subject: anchor\r\nContent-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
            )
            t0 = time.perf_counter_ns()
            p.sock.sendto(invite.encode(), p.server)
            t1, ok = p.final_reply(cid, "1 INVITE")
            if not ok.startswith(b"SIP/2.0 200"):
                continue
            out.append((t1 - t0) / 1000)
            to = _headers(ok, "to")[0]
            target = _headers(ok, "contact")[0].strip("<>")
            routes = "".join(f"Route: {r}\r\n" for r in reversed(_headers(ok, "record-route")))
            for method, cseq in (("ACK", 1), ("BYE", 2)):
                req = (
                    f"{method} {target} SIP/2.0\r\n{p.via(cid + method)}\r\n{common}To: {to}\r\n{routes}"
                    f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                )
                p.sock.sendto(req.encode(), p.server)
            p.final_reply(cid, "2 BYE")
            time.sleep(max(0.0, 1 / rate - (time.perf_counter_ns() - t0) / 1e9))
    finally:
        p.close()
    return out
