"""Helpers shared by the tests: an in-process server on ephemeral ports, a UDP peer, and a
ksr subprocess for sipp runs. Everything binds 127.0.0.1 port 0 so tests can run side by side."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.core.config import DEFAULT_MODULES, Config
from ksr.core.server import Server
from ksr.sip.message import Response, parse_message_untrusted

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
# The workplace's shared folder (RFC 4475 messages, Kamailio's JSON-RPC captures) lies beside
# the clone; KSR_SHARED_DIR names it where it lies elsewhere. Tests that read it are skipped,
# with this reason, where it is missing.
SHARED = Path(os.environ.get("KSR_SHARED_DIR") or REPO.parent / "shared")
RFC4475 = SHARED / "rfc4475"
CAPTURES = SHARED / "jsonrpc-captures"
needs_rfc4475 = pytest.mark.skipif(
    not RFC4475.is_dir(), reason=f"{RFC4475} is missing: clone beside it or set KSR_SHARED_DIR"
)
needs_captures = pytest.mark.skipif(
    not CAPTURES.is_dir(), reason=f"{CAPTURES} is missing: clone beside it or set KSR_SHARED_DIR"
)


def make_config(
    modules: list[str] | None = None,
    modparam: dict[str, dict[str, Any]] | None = None,
    listen: list[str] | None = None,
    **core: Any,
) -> Config:
    data: dict[str, Any] = {"core": {"listen": listen or ["udp:127.0.0.1:0"], **core}}
    if modules is not None:
        data["loadmodule"] = modules
    if "jsonrpcs" in (DEFAULT_MODULES if modules is None else modules) and "jsonrpcs" not in (
        modparam or {}
    ):
        # a private RPC socket per test server: tests run side by side
        sock = os.path.join(tempfile.gettempdir(), f"ksr_rpc_test_{uuid.uuid4().hex[:12]}.sock")
        modparam = {**(modparam or {}), "jsonrpcs": {"dgram_socket": sock}}
    if modparam:
        data["modparam"] = modparam
    return Config.model_validate(data)


def write_script(tmp: Path, text: str, suffix: str = ".lua") -> Path:
    p = tmp / f"route{suffix}"
    p.write_text(text)
    return p


@contextlib.asynccontextmanager
async def running_server(config: Config, script: Path) -> AsyncIterator[Server]:
    """A Server serving on real sockets inside the current trio run."""
    server = Server(config, script)
    server.load_script()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


def udp_addr(server: Server) -> tuple[str, int]:
    s = next(s for s in server.listeners if s.proto == "udp")
    return s.ip, s.port


class UdpPeer:
    """A SIP peer on a real UDP socket (trio)."""

    def __init__(self) -> None:
        self.sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)

    async def bind(self) -> UdpPeer:
        await self.sock.bind(("127.0.0.1", 0))
        return self

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def send(self, data: bytes | str, addr: tuple[str, int]) -> None:
        if isinstance(data, str):
            data = data.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        await self.sock.sendto(data, addr)

    async def recv(self, timeout: float = 2.0) -> bytes:
        with trio.fail_after(timeout):
            data, _ = await self.sock.recvfrom(65535)
            return bytes(data)

    async def recv_reply(self, timeout: float = 2.0) -> Response:
        msg = parse_message_untrusted(await self.recv(timeout))
        assert isinstance(msg, Response), f"expected a reply, got {msg!r}"
        return msg

    async def nothing(self, timeout: float = 0.3) -> bool:
        """True if nothing arrives within timeout."""
        with trio.move_on_after(timeout):
            await self.sock.recvfrom(65535)
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def sip_request(
    method: str = "OPTIONS",
    ruri: str = "sip:ksr@127.0.0.1",
    port: int = 5090,
    branch: str = "z9hG4bK-test-1",
    call_id: str = "test-call-1",
    cseq: int = 1,
    extra: str = "",
    body: str = "",
    to_tag: str | None = None,
) -> str:
    """A well-formed request text from a peer at 127.0.0.1:port."""
    to = "<sip:ksr@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:alice@127.0.0.1>;tag=fromtag-{call_id}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:alice@127.0.0.1:{port}>",
    ]
    if extra:
        lines.extend(x for x in extra.strip("\n").split("\n"))
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (servers listen on both)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
        s.close()
        other = socket.socket(
            socket.AF_INET, socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        )
        try:
            other.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            other.close()
        return port
    raise RuntimeError("no free port found")


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl CLI in folder."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for ksr's "listening on" log line."""
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ksr exited: {log.read_text()}")
        if b"listening on" in log.read_bytes():
            return
        time.sleep(0.05)
    raise RuntimeError(f"ksr did not start: {log.read_text()}")


def wait_steered(log: Path, n: int, timeout: float = 30) -> None:
    """Wait until the supervisor of ``-n n`` steers datagrams to all n workers by Call-ID
    (ksr/transport/udp_group.py), or said it cannot: then a message's worker no longer depends
    on the sender's address."""
    want = f"steered by Call-ID to workers {list(range(n))}".encode()
    deadline = time.time() + timeout
    while want not in (text := log.read_bytes()) and b"no steering by Call-ID" not in text:
        if time.time() > deadline:
            raise RuntimeError(f"the workers are not steered to: {text.decode()[-3000:]}")
        time.sleep(0.05)


def wait_workers(
    n: int, timeout: float = 60
) -> Callable[[int, subprocess.Popen[bytes], Path], None]:
    """A ``ready`` for ksr_process: every one of ``n`` workers logged its "listening on" line
    (the first one alone may answer long before the others on a busy machine)."""

    def ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.time() + timeout
        while log.read_bytes().count(b" listening on ") < n:
            if proc.poll() is not None:
                raise RuntimeError(f"ksr exited: {log.read_text()}")
            if time.time() > deadline:
                raise RuntimeError(f"ksr did not start: {log.read_text()}")
            time.sleep(0.05)

    return ready


def wait_answering(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Send OPTIONS until anything answers (any reply means the script is serving); for a ksr
    that logs too little to say it is listening."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    deadline = time.time() + 20
    n = 0
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ksr exited:\n{log.read_text()}")
            n += 1
            # a keepalive to ksr itself (with its port: else it is not "myself" and relayed)
            probe = sip_request(
                "OPTIONS", f"sip:127.0.0.1:{port}", 9, f"z9hG4bK-probe{n}", f"probe{n}"
            )
            s.sendto(probe.encode(), ("127.0.0.1", port))
            try:
                s.recvfrom(65535)
                return
            except TimeoutError:
                continue
        raise RuntimeError(f"ksr did not answer:\n{log.read_text()}")
    finally:
        s.close()


@contextlib.contextmanager
def ksr_process(
    script: Path,
    config_text: str = "",
    listen: list[str] | None = None,
    extra_args: list[str] | None = None,
    ready: Callable[[int, subprocess.Popen[bytes], Path], None] = wait_listening,
    env: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run ``python -m ksr run`` as a subprocess on free ports; yields {'port', 'proc', 'log',
    'dir', 'rpc'} ('rpc': its own jsonrpcs socket, given through $KSR_RPC_SOCKET) once
    ``ready`` returns."""
    port = free_port()
    listen = listen or [f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"]
    tmp = Path(tempfile.mkdtemp(prefix="ksr-test-"))
    cfg = tmp / "ksr.toml"
    cfg.write_text(config_text)
    logf = tmp / "ksr.log"
    rpc = str(tmp / "rpc.sock")
    args = [sys.executable, "-m", "ksr", "run", "--config", str(cfg), "--script", str(script)]
    for spec in listen:
        args += ["--listen", spec]
    args += extra_args or []
    with open(logf, "wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
            env={**os.environ, "PYTHONUNBUFFERED": "1", "KSR_RPC_SOCKET": rpc, **(env or {})},
        )
    try:
        ready(port, proc, logf)
        yield {"port": port, "proc": proc, "log": logf, "dir": tmp, "rpc": rpc}
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def sipp_command(
    scenario: Path, *args: str, port: int | None = None, calls: int = 1, timeout: float = 30
) -> list[str]:
    """A sipp command line: the scenario, local 127.0.0.1:port (a free port unless given), how
    many calls, no terminal UI, a time limit; args add the rest (remote address, -s, -r ...)."""
    return [
        "sipp",
        "-sf",
        str(scenario),
        *args,
        "-i",
        "127.0.0.1",
        "-p",
        str(port or free_port()),
        "-m",
        str(calls),
        "-nostdin",
        "-timeout",
        f"{int(timeout)}s",
    ]


def run_sipp(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run sipp (no terminal UI) and return its result; exit code 0 = all calls succeeded."""
    return subprocess.run(
        ["sipp", *args, "-nostdin", "-timeout", f"{int(timeout)}s"],
        capture_output=True,
        text=True,
        timeout=timeout + 15,
    )
