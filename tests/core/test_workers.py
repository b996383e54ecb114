"""`ksr run -n 2`: two worker processes on one SO_REUSEPORT port, restarted when they die."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO, ksr_process, sip_request, write_script

SCRIPT = 'function ksr_request_route() KSR.sl.sl_send_reply(200, "OK " .. KSR.pv.get("$pp")) end\n'


def _wait_for(pred, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _options_from_many_ports(port: int, n: int) -> set[int]:
    """Send OPTIONS from n source ports; every one must be answered. Returns the worker pids."""
    pids: set[int] = set()
    for i in range(n):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(3)
            me = s.getsockname()[1]
            s.sendto(
                sip_request(port=me, branch=f"z9hG4bK-w{i}-{me}", call_id=f"w{i}-{me}").encode(),
                ("127.0.0.1", port),
            )
            first_line = s.recv(65535).split(b"\r\n", 1)[0].decode()
            assert first_line.startswith("SIP/2.0 200 OK ")
            pids.add(int(first_line.rsplit(" ", 1)[1]))
    return pids


def _psx(sock: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "ksr", "rpc", "--socket", sock, "core.psx"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_two_workers_share_the_port_and_get_restarted(tmp_path: Path) -> None:
    script = write_script(tmp_path, SCRIPT)
    with ksr_process(script, extra_args=["-n", "2"]) as ksr:
        log = ksr["log"]
        _wait_for(lambda: log.read_text().count("listening on") >= 2)
        pids = _options_from_many_ports(ksr["port"], 24)
        procs = _psx(ksr["rpc"])
        supervisor, workers = procs[0], procs[1:]
        assert supervisor["PID"] == ksr["proc"].pid
        assert len(workers) == 2
        assert pids == {w["PID"] for w in workers}  # the kernel spread the peers over both

        with socket.create_connection(
            ("127.0.0.1", ksr["port"]), timeout=5
        ) as tcp:  # SO_REUSEPORT TCP
            tcp.sendall(
                sip_request(port=tcp.getsockname()[1], call_id="tcp-1")
                .replace("UDP", "TCP")
                .encode()
            )
            assert tcp.recv(65535).startswith(b"SIP/2.0 200 OK ")

        victim = int(workers[1]["PID"])  # type: ignore[call-overload]
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: log.read_text().count("listening on") >= 3)
        after = {int(w["PID"]) for w in _psx(ksr["rpc"])[1:]}  # type: ignore[call-overload]
        assert len(after) == 2
        assert victim not in after
        assert _options_from_many_ports(ksr["port"], 24) == after

        ksr["proc"].terminate()  # SIGTERM to the supervisor stops everything cleanly
        assert ksr["proc"].wait(15) == 0
        for pid in after:
            assert not Path(f"/proc/{pid}").exists()  # stopped and reaped by the supervisor
        assert not os.path.exists(ksr["rpc"])  # worker 0 removed its RPC socket
