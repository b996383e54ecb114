"""Real sipp registrations with digest auth against ksr subprocesses on every backend;
kill -9 and restart keep acknowledged bindings; two nodes in db_mode 3 share bindings."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.registrar.helpers import invite, register
from tests.registrar.procs import SCENARIO, SyncPeer, add_users, config_text, write_script_file
from tests.support import free_port, ksr_process, run_sipp

pytestmark = pytest.mark.sipp
USERS = 5


def sipp_register(port: int, tmp: Path, n: int = USERS) -> None:
    """One sipp run per user (each with its own -au/-ap credentials), three REGISTERs each."""
    for i in range(n):
        csv = tmp / f"user{i}.csv"
        csv.write_text(f"SEQUENTIAL\nu{i:05d};127.0.0.1;pw{i}\n")
        res = run_sipp(
            [
                "-sf",
                str(SCENARIO),
                "-inf",
                str(csv),
                f"127.0.0.1:{port}",
                "-i",
                "127.0.0.1",
                "-p",
                str(free_port()),
                "-m",
                "3",
                "-au",
                f"u{i:05d}",
                "-ap",
                f"pw{i}",
                "-recv_timeout",
                "15000",  # generous: a loaded machine (CI, parallel work) may starve ksr for seconds
            ],
            timeout=60,
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def lookup_status(peer: SyncPeer, port: int, user: str) -> tuple[int, str]:
    peer.send(invite(peer.port, f"sip:{user}@127.0.0.1", call_id=f"inv-{user}-{port}"), port)
    rpl = peer.recv()
    return rpl.status, rpl.get("contact") or ""  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", [1, 3])
def test_sipp_register_kill9_restart(tmp_path: Path, db_url: str, mode: int) -> None:
    add_users(db_url, USERS)
    script = write_script_file(tmp_path)
    cfg = config_text(db_url, mode)
    with ksr_process(script, cfg) as k:
        sipp_register(k["port"], tmp_path)
        k["proc"].send_signal(signal.SIGKILL)  # no shutdown hook runs
        k["proc"].wait(5)
    peer = SyncPeer()
    with ksr_process(script, cfg) as k:
        for i in (0, USERS // 2, USERS - 1):
            status, contact = lookup_status(peer, k["port"], f"u{i:05d}")
            assert status == 302, f"u{i:05d} lost after kill -9 (db_mode {mode})"
            assert f"u{i:05d}@127.0.0.1" in contact
        assert lookup_status(peer, k["port"], "nobody")[0] == 404
    peer.close()


def test_two_nodes_share_bindings(tmp_path: Path, shared_db_url: str) -> None:
    """Register on node A, call through node B: B finds the binding and relays to the UA."""
    add_users(shared_db_url, 1)
    script = write_script_file(tmp_path)
    cfg = config_text(shared_db_url, 3)
    ua = SyncPeer()
    with ksr_process(script, cfg) as a, ksr_process(script, cfg) as b:
        assert a["port"] != b["port"]
        # register u00000 on A (digest)
        from tests.registrar.digest_client import authorization

        ua.send(register(ua.port, user="u00000", call_id="share-1"), a["port"])
        ch = ua.recv()
        assert ch.status == 401  # type: ignore[union-attr]
        ua.send(
            register(
                ua.port,
                user="u00000",
                call_id="share-1",
                cseq=2,
                extra=[authorization(ch, "u00000", "pw0")],
            ),
            a["port"],
        )  # type: ignore[arg-type]
        assert ua.recv().status == 200  # type: ignore[union-attr]
        # a caller sends INVITE to B with X-Relay: B looks up and forwards to the UA
        caller = SyncPeer()
        caller.send(
            invite(caller.port, "sip:u00000@127.0.0.1", call_id="share-inv", extra=["X-Relay: 1"]),
            b["port"],
        )
        req = ua.recv()
        assert getattr(req, "method", None) == "INVITE"
        assert req.uri == f"sip:u00000@127.0.0.1:{ua.port}"  # type: ignore[union-attr]
        # and unregistering on B is seen by A
        ua.send(
            register(
                ua.port,
                user="u00000",
                call_id="share-1",
                cseq=3,
                contacts=["*"],
                extra=["Expires: 0", authorization(ch, "u00000", "pw0", nc=2)],
            ),
            b["port"],
        )  # type: ignore[arg-type]
        rpl = ua.recv()
        assert rpl.status == 200, rpl  # type: ignore[union-attr]
        assert lookup_status(caller, a["port"], "u00000")[0] == 404
        caller.close()
    ua.close()
