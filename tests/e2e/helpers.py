"""Shared pieces of the end-to-end tests: the configuration the default scripts run with, a
blocking UDP peer that collects a request's answers, and sipp runners."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from ksr.sip.message import Request, Response, parse_message_untrusted
from tests.support import SCRIPTS, sipp_command

HERE = Path(__file__).parent
SIPP = HERE / "sipp"
DIALOG_SIPP = HERE.parent / "dialog" / "sipp"  # generic callee scenarios, shared
LANGS = ["default.lua", "default.py"]


def script(lang: str) -> Path:
    return SCRIPTS / lang


def config_text(tmp: Path, auth: bool = False, debug: int = 2) -> str:
    """The stock module list with every file kept in ``tmp``; ``auth`` turns on WITH_AUTH."""
    db = f"sqlite://{tmp}/ksr.sqlite"
    text = f"""
[core]
debug = {debug}
[modparam.usrloc]
db_url = "{db}"
[modparam.auth_db]
db_url = "{db}"
[modparam.auth]
secret = "e2e-test-secret"
[modparam.acc]
db_url = "jsonl://{tmp}/cdrs.jsonl"
"""
    if auth:
        text += "[core.defines]\nWITH_AUTH = 1\n"
    return text


class Peer:
    """A blocking UDP SIP peer on 127.0.0.1."""

    def __init__(self, timeout: float = 3.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(timeout)
        self.port = int(self.sock.getsockname()[1])

    def send(self, data: str | bytes, port: int) -> None:
        if isinstance(data, str):
            data = data.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        self.sock.sendto(data, ("127.0.0.1", port))

    def recv(self) -> Request | Response:
        return parse_message_untrusted(self.sock.recvfrom(65535)[0])

    def final(self, data: str | bytes, port: int) -> Response:
        """Send a request and return its final answer (provisional ones skipped)."""
        self.send(data, port)
        while True:
            msg = self.recv()
            assert isinstance(msg, Response), f"expected a reply, got {msg!r}"
            if msg.status >= 200:
                return msg

    def close(self) -> None:
        self.sock.close()


def request(
    method: str,
    ruri: str,
    peer: Peer,
    call_id: str,
    from_uri: str = "sip:alice@127.0.0.1",
    extra: list[str] | None = None,
    max_forwards: int = 70,
) -> str:
    """A well-formed request from ``peer``."""
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK-{call_id};rport",
        f"Max-Forwards: {max_forwards}",
        f"From: <{from_uri}>;tag=ft-{call_id}",
        f"To: <{ruri}>",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:alice@127.0.0.1:{peer.port}>",
        *(extra or []),
        "Content-Length: 0",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def sipp_args(scenario: Path, port: int | None = None, transport: str = "udp") -> list[str]:
    tcp = ["-t", "t1"] if transport == "tcp" else []
    return sipp_command(scenario, *tcp, port=port, timeout=20)


def run_sipp(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=40)


def cdrs(tmp: Path, call_id: str, want: int = 1) -> list[dict[str, Any]]:
    """The CDRs of one call in the acc jsonl file (waits a little for the writer to reach
    ``want`` records; want=0 reads once)."""
    path = tmp / "cdrs.jsonl"
    found: list[dict[str, Any]] = []
    for _ in range(40 if want else 1):
        if path.exists():
            found = [
                r
                for r in map(json.loads, path.read_text().splitlines())
                if r.get("call_id") == call_id
            ]
            if len(found) >= want:
                break
        if not want:
            break
        time.sleep(0.1)
    return found
