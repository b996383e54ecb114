"""`ksr run -n 2`: the cases where a message reaches another worker than its owner, on real
sockets: a CANCEL and an ACK in the compact form (``i:``, which the kernel's steering program
does not read, ksr/transport/steer.py) from another port than the INVITE, a caller on TCP whose
calls belong to the worker that did not accept the connection (replies and the callee's BYE
go back over that connection), digest auth whose challenge and answer are handled by different
workers (one secret), a replayed nonce-count refused by the other worker (REGISTERs stay where
they arrive, which the kernel picks by their Call-ID), a dead worker (its calls are handled
where they arrive) and RPC answered for all workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ksr.rpc_client import call as rpc_call
from ksr.sip.builders import make_reply
from ksr.sip.digest import compute_ha1, compute_response
from ksr.sip.framing import StreamFramer
from ksr.sip.message import Request, Response, parse_message_untrusted
from ksr.sip.owner import call_id_owner
from tests.support import REPO, ksr_process, wait_steered, write_script

SCRIPT = """
function ksr_request_route()
  if KSR.is_REGISTER() and KSR.pv.get("$tU") == "whoami" then
    KSR.sl.sl_send_reply(200, "pid=" .. KSR.pv.get("$pp"))
    return 1
  end
  if KSR.is_REGISTER() then
    local rc = KSR.auth.pv_www_authenticate("ksr.test", "pw", 0)
    if rc == -6 then KSR.sl.sl_send_reply(403, "Replayed") return 1 end
    if rc < 0 then KSR.auth.www_challenge("ksr.test", 1) return 1 end
    KSR.sl.sl_send_reply(200, "OK pid=" .. KSR.pv.get("$pp"))
    return 1
  end
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if not KSR.is_ACK() and KSR.tm.t_check_trans() == 0 then return 1 end
  if KSR.pv.get("$tt") ~= nil then
    if KSR.rr.loose_route() > 0 then KSR.tm.t_relay() return 1 end
    if KSR.is_ACK() and KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  KSR.rr.record_route()
  KSR.tm.t_relay()
end
"""
CONFIG = 'loadmodule = ["sl", "tm", "rr", "auth", "jsonrpcs"]\n'


@contextmanager
def two_workers(tmp: Path) -> Iterator[dict[str, Any]]:
    with ksr_process(write_script(tmp, SCRIPT), CONFIG, extra_args=["-n", "2"]) as k:
        wait_steered(k["log"], 2)
        yield k


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


def port_of(s: socket.socket) -> int:
    return int(s.getsockname()[1])


def call_ids(owner: int, n: int, tag: str) -> list[str]:
    """n Call-IDs that worker ``owner`` of 2 owns."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        cid = f"{tag}-{i}-{os.getpid()}"
        if call_id_owner(cid, 2) == owner:
            out.append(cid)
        i += 1
    return out


def request(
    method: str,
    ruri: str,
    via: str,
    call_id: str,
    cseq: int,
    extra: str = "",
    to_tag: str = "",
    compact: bool = False,
) -> bytes:
    """``compact``: the Call-ID as ``i:``, which the kernel's steering does not read (the
    message reaches a worker by its length, and the owner rule hands it over)."""
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: <sip:alice@127.0.0.1>;tag=a-{call_id}",
        "To: <sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
        f"i: {call_id}" if compact else f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *[x for x in extra.split("\n") if x],
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def recv_msg(s: socket.socket) -> Request | Response:
    return parse_message_untrusted(s.recv(65535))


def recv_until(s: socket.socket, want: str) -> Request | Response:
    """Skip provisional replies and retransmissions until ``want`` ("487", "INVITE"...)."""
    while True:
        m = recv_msg(s)
        if (isinstance(m, Response) and str(m.status) == want) or (
            isinstance(m, Request) and m.method == want
        ):
            return m


def answer(
    uas: socket.socket, req: Request, code: int, extra: list[tuple[str, str]] | None = None
) -> None:
    rpl = make_reply(req, code, to_tag="b-" + req.call_id, extra_headers=extra)
    via = req.top_via
    uas.sendto(rpl.to_bytes(), (via.host, via.port or 5060))


def stats(sock: str, spec: str) -> dict[str, int]:
    reply = rpc_call(
        sock, {"jsonrpc": "2.0", "method": "stats.get_statistics", "params": [spec], "id": 1}
    )
    return {k: int(v) for k, _, v in (x.partition(" = ") for x in reply["result"])}


def test_cancel_and_ack_from_another_port_find_the_invite(tmp_path: Path) -> None:
    with two_workers(tmp_path) as k:
        ksr = ("127.0.0.1", k["port"])
        uas = udp()
        for n, cid in enumerate(call_ids(0, 4, "c") + call_ids(1, 4, "c")):
            caller, other = udp(), udp()  # the CANCEL and the ACK come from another port
            via = f"SIP/2.0/UDP 127.0.0.1:{port_of(caller)};branch=z9hG4bK-c{n};rport"
            ruri = f"sip:bob@127.0.0.1:{port_of(uas)}"
            caller.sendto(request("INVITE", ruri, via, cid, 1), ksr)
            inv = recv_until(uas, "INVITE")
            assert isinstance(inv, Request)
            answer(uas, inv, 180)
            recv_until(caller, "180")
            other.sendto(request("CANCEL", ruri, via, cid, 1, compact=True), ksr)
            assert isinstance(recv_until(other, "200"), Response)  # 200 canceling, to rport
            cancel = recv_until(uas, "CANCEL")
            assert isinstance(cancel, Request)
            answer(uas, cancel, 200)
            answer(uas, inv, 487)
            assert recv_until(uas, "ACK").method == "ACK"  # ksr acknowledges the 487 hop by hop
            final = recv_until(caller, "487")
            tag = final.to.tag or ""
            other.sendto(request("ACK", ruri, via, cid, 1, to_tag=tag, compact=True), ksr)
            caller.close()
            other.close()
        time.sleep(0.5)
        uas.settimeout(0.3)
        extra = []
        try:
            while True:
                extra.append(recv_msg(uas))
        except TimeoutError:
            pass
        # the caller's ACKs ended in ksr (absorbed by the transaction), none was forwarded
        assert [m for m in extra if isinstance(m, Request) and m.method == "ACK"] == []
        st = stats(k["rpc"], "handoff:")
        assert st["handoff:relayed"] > 0
        assert st["handoff:owner_down"] == 0


def test_tcp_caller_whose_calls_belong_to_both_workers(tmp_path: Path) -> None:
    with two_workers(tmp_path) as k:
        uas = udp()
        tcp = socket.create_connection(("127.0.0.1", k["port"]), timeout=5)
        me = tcp.getsockname()[1]
        framer = StreamFramer()

        def tcp_msg() -> Request | Response:
            while True:
                raw = framer.next_message()
                if raw is not None and raw.strip():
                    return parse_message_untrusted(raw)
                if raw is None:
                    data = tcp.recv(65535)
                    assert data, "connection closed"
                    framer.feed(data)

        # one call owned by each worker: one of them did not accept this connection
        for n, cid in enumerate(call_ids(0, 1, "t") + call_ids(1, 1, "t")):
            via = f"SIP/2.0/TCP 127.0.0.1:{me};branch=z9hG4bK-t{n}"
            contact = f"Contact: <sip:alice@127.0.0.1:{me};transport=tcp>"
            tcp.sendall(
                request("INVITE", f"sip:bob@127.0.0.1:{port_of(uas)}", via, cid, 1, contact)
            )
            inv = recv_until(uas, "INVITE")
            assert isinstance(inv, Request)
            rr = inv.get_values("record-route")
            assert rr, "record_route() added Record-Route"
            answer(
                uas,
                inv,
                200,
                [
                    ("Contact", f"<sip:bob@127.0.0.1:{port_of(uas)}>"),
                    *[("Record-Route", v) for v in rr],
                ],
            )
            while not (isinstance(m := tcp_msg(), Response) and m.status == 200):
                pass
            assert m.call_id == cid
            # the callee hangs up: its BYE follows the route set back to the TCP caller
            bye_via = f"SIP/2.0/UDP 127.0.0.1:{port_of(uas)};branch=z9hG4bK-bye{n};rport"
            routes = "\n".join(f"Route: {v}" for v in rr)
            bye = request("BYE", f"sip:alice@127.0.0.1:{me};transport=tcp", bye_via, cid, 1, routes)
            bye = bye.replace(
                f"From: <sip:alice@127.0.0.1>;tag=a-{cid}".encode(),
                b"From: <sip:bob@127.0.0.1>;tag=b-" + cid.encode(),
            )
            bye = bye.replace(
                b"To: <sip:bob@127.0.0.1>", f"To: <sip:alice@127.0.0.1>;tag=a-{cid}".encode()
            )
            uas.sendto(bye, ("127.0.0.1", k["port"]))
            while not (isinstance(m := tcp_msg(), Request) and m.method == "BYE"):
                pass
            assert m.call_id == cid
        tcp.close()
        assert stats(k["rpc"], "handoff:")["handoff:relayed"] > 0


def _register(s: socket.socket, port: int, cid: str, cseq: int, auth: str = "") -> Response:
    via = f"SIP/2.0/UDP 127.0.0.1:{port_of(s)};branch=z9hG4bK-r{cid}{cseq};rport"
    extra = f"Contact: <sip:alice@127.0.0.1:{port_of(s)}>\nExpires: 60" + (
        f"\nAuthorization: {auth}" if auth else ""
    )
    msg = request("REGISTER", "sip:127.0.0.1", via, cid, cseq, extra).replace(
        b"To: <sip:bob@127.0.0.1>", b"To: <sip:alice@127.0.0.1>"
    )
    s.sendto(msg, ("127.0.0.1", port))
    m = recv_msg(s)
    assert isinstance(m, Response)
    return m


def _credentials(challenge: Response, nc: int) -> str:
    header = challenge.get("www-authenticate") or ""
    params: dict[str, str] = {}
    for p in header.split(" ", 1)[1].split(","):
        key, _, value = p.strip().partition("=")
        params[key] = value
    nonce = params["nonce"].strip('"')
    ha1 = compute_ha1("MD5", "alice", "ksr.test", "pw")
    ncs = f"{nc:08x}"
    resp = compute_response("MD5", ha1, nonce, "REGISTER", "sip:127.0.0.1", "auth", ncs, "cn0")
    return (
        f'Digest username="alice", realm="ksr.test", nonce="{nonce}", uri="sip:127.0.0.1", '
        f'response="{resp}", algorithm=MD5, qop=auth, nc={ncs}, cnonce="cn0"'
    )


def test_digest_challenge_and_answer_on_different_workers(tmp_path: Path) -> None:
    with two_workers(tmp_path) as k:
        s = udp()
        first, second = call_ids(0, 3, "r"), call_ids(1, 1, "r")  # by worker (steered)
        challenge = _register(s, k["port"], first[0], 1)  # challenged by one worker
        assert challenge.status == 401
        ok = _register(s, k["port"], second[0], 2, _credentials(challenge, 1))  # the other
        assert ok.status == 200, ok.reason
        # the same nonce-count again, to the first worker: a replay there too (shared table)
        again = _register(s, k["port"], first[1], 3, _credentials(challenge, 1))
        assert again.status == 403, again.reason
        # a higher nonce-count with the same nonce is fine on the first worker
        later = _register(s, k["port"], first[2], 4, _credentials(challenge, 2))
        assert later.status == 200
        assert later.reason != ok.reason  # "OK pid=...": another worker answered


def _psx(sock: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "ksr", "rpc", "--socket", sock, "core.psx"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_dead_worker_its_calls_are_handled_where_they_arrive(tmp_path: Path) -> None:
    with two_workers(tmp_path) as k:
        procs = _psx(k["rpc"])
        assert [p["DSC"].split()[2] for p in procs[1:]] == ["child=0", "child=1"]
        seen = len(k["log"].read_text())
        os.kill(int(procs[2]["PID"]), signal.SIGKILL)  # its hand-off socket file stays behind
        deadline = time.monotonic() + 10  # the supervisor steers its datagrams to worker 0
        while "steered by Call-ID to workers [0]\n" not in k["log"].read_text()[seen:]:
            assert time.monotonic() < deadline, k["log"].read_text()[-3000:]
            time.sleep(0.02)
        answered = 0
        uas = udp()
        uas.settimeout(2)
        for cid in call_ids(1, 6, "d"):  # owned by the dead worker
            s = udp()
            via = f"SIP/2.0/UDP 127.0.0.1:{port_of(s)};branch=z9hG4bK-{cid};rport"
            ruri = f"sip:bob@127.0.0.1:{port_of(uas)}"
            s.sendto(request("OPTIONS", ruri, via, cid, 1), ("127.0.0.1", k["port"]))
            try:
                answered += recv_until(uas, "OPTIONS").call_id == cid
            except TimeoutError:
                pass
            s.close()
        # while worker 1 is down, worker 0 gets every message and handles its calls; once
        # restarted (0.5 s later), worker 1 handles its own again
        assert answered == 6
        deadline = time.monotonic() + 15
        while k["log"].read_text().count("listening on") < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert stats(k["rpc"], "handoff:")["handoff:owner_down"] >= 1
        assert len(_psx(k["rpc"])) == 3
