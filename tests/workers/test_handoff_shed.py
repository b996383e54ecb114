"""Overload shedding (core.shed_queue_age) with worker processes: an INVITE handed over to
its owner is judged by how long it waited where it arrived, not by a queue age the owner's
own UDP socket left behind (a stale backlog figure once made an owner answer 503 to every
INVITE handed to it until its own socket's next batch). Two workers in one trio run over
their real hand-off sockets (as bench.profile_workers runs them)."""

from __future__ import annotations

from pathlib import Path

import trio

from bench.inproc import Wire, make_server
from ksr.core.handoff import Handoff
from ksr.sip.owner import call_id_owner

SCRIPT = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "routed")
  return 1
end
"""


def invite(call_id: str) -> bytes:
    return (
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{call_id}\r\n"
        f"From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def call_ids_of(owner: int, n: int) -> list[str]:
    out = [f"shed-{i}" for i in range(100) if call_id_owner(f"shed-{i}", 2) == owner]
    return out[:n]


async def wait_sent(wire: Wire, port: int) -> list[bytes]:
    for _ in range(2000):
        got = wire.take(port)
        if got:
            return got
        await trio.sleep(0.001)
    raise AssertionError("nothing sent")


async def test_a_handed_over_invite_is_judged_by_its_own_queue_age(tmp_path: Path) -> None:
    script = tmp_path / "route.lua"
    script.write_text(SCRIPT)
    rundir = tmp_path / "run"
    rundir.mkdir()
    config = {"loadmodule": ["sl"], "core": {"shed_queue_age": 0.2}}
    workers = []
    for i in range(2):
        server, wire, sock = make_server(script, config)
        server.worker_id = i
        server.handoff = Handoff(server, i, 2, str(rundir))
        workers.append((server, wire, sock))
    async with trio.open_nursery() as nursery:
        for server, _, _ in workers:
            server.nursery = nursery
            server.runner.nursery = nursery
            await nursery.start(server.timers.run)
            assert server.handoff is not None
            await nursery.start(server.handoff.serve)
            server.handoff.ready.set()
        (w0, wire0, sock0), (w1, wire1, _) = workers
        # worker 1's own socket was backlogged a while ago; worker 0's queue is fresh
        w1.rx_age = 5.0
        w0.rx_age = 0.0
        first, second = call_ids_of(1, 2)
        w0.receive(invite(first), "127.0.0.1", 5070, sock0)
        got = await wait_sent(wire1, 5070)
        assert got[0].startswith(b"SIP/2.0 200 routed"), got[0][:40]
        # an INVITE that waited where it arrived is still shed by its owner
        w0.rx_age = 0.5
        w0.receive(invite(second), "127.0.0.1", 5070, sock0)
        got = await wait_sent(wire1, 5070)
        assert got[0].startswith(b"SIP/2.0 503"), got[0][:40]
        nursery.cancel_scope.cancel()
