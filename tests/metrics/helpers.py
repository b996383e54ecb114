"""Plain-socket helpers for the metrics tests: HTTP GETs on a fresh TCP connection (each may
land on another worker), the exposition text read into samples, OPTIONS over UDP."""

from __future__ import annotations

import socket
import uuid


def http_get(port: int, path: str, extra: str = "") -> tuple[int, str, bytes]:
    """One GET on a new connection: (status, head, body). ``extra`` asks a second path on the
    same connection (the same worker answers both) and its body is appended after a NUL."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        req = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"
        if extra:
            req += f"GET {extra} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        else:
            req = req.replace("Host: x\r\n", "Host: x\r\nConnection: close\r\n")
        s.sendall(req.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    bodies = []
    status = 0
    head = ""
    rest = data
    while rest:
        h, _, rest = rest.partition(b"\r\n\r\n")
        text = h.decode("latin-1")
        length = 0
        for line in text.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v)
        if not status:
            status, head = int(text.split(" ")[1]), text
        bodies.append(rest[:length])
        rest = rest[length:]
    return status, head, b"\0".join(bodies)


def samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def send_options(port: int, n: int) -> None:
    """n OPTIONS with distinct Call-IDs from one socket; waits for every 200."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    me = s.getsockname()[1]
    try:
        for _ in range(n):
            cid = uuid.uuid4().hex
            msg = (
                f"OPTIONS sip:ksr@127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{cid}\r\n"
                f"From: <sip:t@127.0.0.1>;tag={cid[:8]}\r\nTo: <sip:ksr@127.0.0.1>\r\n"
                f"Call-ID: {cid}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            s.sendto(msg.encode(), ("127.0.0.1", port))
            reply = s.recv(65536)
            assert reply.startswith(b"SIP/2.0 200"), reply[:80]
    finally:
        s.close()
