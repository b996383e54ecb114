"""Malformed input never writes a traceback: the RFC 4475 torture messages and seeded mutations
of ordinary requests and replies, through both default scripts (in process, every log record
looked at) and through a real ksr process over UDP and TCP with one and with two workers.

A host name taken from a message is never sent to (the socket would look it up in DNS,
blocking) unless the script relays there."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from ksr.core.hosts import HostTable
from ksr.testing import ScriptHarness
from tests.e2e.helpers import config_text
from tests.support import RFC4475, SCRIPTS, ksr_process, wait_workers

from .mutations import messages

CORPUS = sorted(Path(RFC4475).glob("*.dat"))


@pytest.fixture(params=["default.lua", "default.py"])
async def h(  # type: ignore[no-untyped-def]
    request: pytest.FixtureRequest, tmp_path: Path, autojump_clock: trio.testing.MockClock
):
    harness = ScriptHarness(
        SCRIPTS / request.param,
        core={"defines": {"WITH_AUTH": 1}},
        modparam={
            "auth": {"qop": "auth"},
            "acc": {"db_url": f"jsonl://{tmp_path}/cdrs.jsonl"},
            "auth_db": {"db_url": f"sqlite://{tmp_path}/k.sqlite"},
            "usrloc": {"db_url": f"sqlite://{tmp_path}/k.sqlite"},
        },
    )
    async with harness.running():
        yield harness


def bad_records(h: ScriptHarness) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in h.logs
        if r.exc_info or "Traceback" in r.getMessage() or "\n" in r.getMessage().rstrip("\n")
    ]


async def test_torture_and_mutations_log_no_traceback(
    h: ScriptHarness, autojump_clock: trio.testing.MockClock
) -> None:
    hosts = HostTable()
    for m in [p.read_bytes() for p in CORPUS] + messages(seed=4475, count=1500, port=5080):
        h.receive(m)
    await trio.sleep(40)  # timers run: retransmissions, expiries
    assert bad_records(h) == []
    # every send went to an address; names from the messages were relayed to only after DNS
    assert [s.destination for s in h.sent if not hosts.is_ip(s.host)] == []


async def test_broken_in_dialog_requests_get_400_and_few_lines(
    h: ScriptHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """The issue's case: an in-dialog request without Call-ID or with a broken From; the dialog
    hook reads those before sanity does."""
    no_callid = (
        "BYE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{i}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>;tag=b\r\n"
        "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    bad_from = (
        "BYE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-f{i}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@\r\nTo: <sip:bob@127.0.0.1>;tag=b\r\n"
        "Call-ID: x{i}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    codes = set()
    for i in range(100):
        for text in (no_callid, bad_from):
            out = h.receive(text.format(i=i).encode())
            codes.add(out.code)
    assert codes <= {400, None}  # answered 400 when a reply can be built, else dropped
    assert bad_records(h) == []
    dialog_lines = [r for r in h.logs if r.name == "ksr.dialog"]
    assert len(dialog_lines) <= 10  # rate-limited


async def test_a_forged_received_does_not_redirect_the_answer(h: ScriptHarness) -> None:
    """received= written by the sender itself is replaced by the real source address."""
    raw = (
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-rcv;received=evil.invalid\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\n"
        "Call-ID: rcv-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    out = h.receive(raw.encode())
    assert out.code == 200
    assert [s.destination for s in out.sent] == ["udp:127.0.0.1:5080"]


# -- a real process -----------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[1, 2], ids=["n1", "n2"])
def ksr(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("malformed")
    n = request.param

    args = ["-n", str(n)] if n > 1 else []
    with ksr_process(
        SCRIPTS / "default.lua", config_text(tmp, auth=True), extra_args=args, ready=wait_workers(n)
    ) as k:
        yield k


def test_real_server_over_udp_and_tcp(ksr: dict[str, Any]) -> None:
    port = ksr["port"]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    mine = udp.getsockname()[1]
    corpus = [p.read_bytes() for p in CORPUS]
    for i, m in enumerate(corpus + messages(seed=13, count=600, port=mine)):
        udp.sendto(m, ("127.0.0.1", port))
        if i % 50 == 0:
            time.sleep(0.05)  # let the server keep up: this is about logs, not load
    # over TCP: one connection per message (a broken Content-Length may stall its stream)
    for m in corpus[:20] + messages(seed=14, count=80, port=mine):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as tcp:
            tcp.sendall(m)
    # still serving. The replies to the flood above may have filled this socket's buffer (and
    # some were dropped there), so read them away first and, as a UDP client does, send the
    # probe again each second until its answer comes
    udp.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while udp.recv(65535):
            pass
    udp.settimeout(1)
    probe = (
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-alive\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
        b"Call-ID: alive-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n" % mine
    )
    deadline = time.monotonic() + 10
    answered = False
    while not answered:
        assert time.monotonic() < deadline
        udp.sendto(probe, ("127.0.0.1", port))
        with contextlib.suppress(TimeoutError):
            while not answered and time.monotonic() < deadline:
                answered = b"alive-1" in udp.recv(65535)
    udp.close()
    log = ksr["log"].read_text()
    assert "Traceback" not in log, log[log.find("Traceback") - 500 :][:3000]
