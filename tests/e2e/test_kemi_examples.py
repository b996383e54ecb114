"""Kamailio's example configuration on ksr: examples/kamailio-basic-kemi/*.toml (WITH_AUTH,
WITH_IPAUTH, WITH_USRLOCDB, WITH_NAT, WITH_ANTIFLOOD, WITH_ACCDB on SQLite) with routing scripts
that make the KSR calls Kamailio's misc/examples/kemi scripts make (tests/e2e/kemi_basic/: Lua,
app_python3, app_python3s), driven by sipp: digest REGISTER of two users, an authenticated call
(INVITE, 407, 180, 200, ACK, BYE) with its acc rows and CDR, CANCEL (a missed call), an unknown
user (404), an OPTIONS keepalive, and a flood from one address banned by pike + htable.

Kamailio's own files are never part of ksr. Point KSR_KAMAILIO_KEMI_DIR at a checkout's
misc/examples/kemi to run the same tests on them, unchanged (skipped otherwise).

ksr listens on 127.0.0.2 so that callers on 127.0.0.1 are not "myself" (the script never
applies pike to its own addresses); the flood comes from 127.0.0.3.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, free_port, ksr_process, sipp_command

pytestmark = pytest.mark.sipp

HERE = Path(__file__).parent
EXAMPLES = REPO / "examples" / "kamailio-basic-kemi"
OURS = HERE / "kemi_basic"
SIPP = HERE / "sipp"
DIALOG_SIPP = HERE.parent / "dialog" / "sipp"
OFFICIAL = os.environ.get("KSR_KAMAILIO_KEMI_DIR", "")
HOST = "127.0.0.2"
USERS = {"alice": "alice-pw", "bob": "bob-pw"}

# (configuration, our script, Kamailio's script)
FLAVOURS = {
    "lua": ("ksr.toml", "basic.lua", "kamailio-basic-kemi-lua.lua"),
    "python": ("ksr-python.toml", "basic_py.py", "kamailio-basic-kemi-python.py"),
    "python3s": ("ksr-python3s.toml", "basic_3s.py", "kamailio-basic-kemi-python3s.py"),
}
PARAMS = [pytest.param((f, "ours"), id=f) for f in FLAVOURS] + [
    pytest.param(
        (f, "official"),
        id=f"{f}-official",
        marks=pytest.mark.skipif(
            not OFFICIAL, reason="set KSR_KAMAILIO_KEMI_DIR to Kamailio's misc/examples/kemi"
        ),
    )
    for f in FLAVOURS
]


def config_for(name: str, tmp: Path) -> str:
    """The shipped example configuration with its files in ``tmp`` and one process."""
    text = (EXAMPLES / name).read_text()
    text = text.replace("sqlite://./kamailio.sqlite", f"sqlite://{tmp}/kamailio.sqlite")
    text = text.replace('dgram_socket = "ksr_rpc.sock"', f'dgram_socket = "{tmp}/rpc.sock"')
    return re.sub(r"(?m)^children = 2$", "children = 1", text)


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ksr exited:\n{log.read_text()}")
        if b"listening on" in log.read_bytes():
            return
        time.sleep(0.05)
    raise RuntimeError(f"ksr did not start:\n{log.read_text()}")


@pytest.fixture(scope="module", params=PARAMS)
def ksr(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    flavour, source = request.param
    cfg_name, ours, official = FLAVOURS[flavour]
    script = Path(OFFICIAL) / official if source == "official" else OURS / ours
    tmp = tmp_path_factory.mktemp(f"kemi-{flavour}")
    text = config_for(cfg_name, tmp)
    cfg = tmp / "ksr.toml"
    cfg.write_text(text)
    for user, pw in USERS.items():
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "ksr",
                "subscriber",
                "add",
                f"{user}@{HOST}",
                pw,
                "-f",
                str(cfg),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(REPO),
        )
        assert res.returncode == 0, res.stderr
    port = free_port()
    with ksr_process(
        script, text, listen=[f"udp:{HOST}:{port}", f"tcp:{HOST}:{port}"], ready=wait_ready
    ) as k:
        k.update(port=port, tmp=tmp, db=tmp / "kamailio.sqlite", uas={})
        yield k


def sipp(k: dict[str, Any], scenario: Path, *args: str, port: int | None = None) -> Any:
    cmd = sipp_command(scenario, *args, f"{HOST}:{k['port']}", port=port, timeout=20)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def register(k: dict[str, Any], user: str, port: int) -> None:
    res = sipp(
        k, SIPP / "register_auth.xml", "-s", user, "-au", user, "-ap", USERS[user], port=port
    )
    assert res.returncode == 0, res.stdout[-1500:] + k["log"].read_text()[-3000:]


def rows(k: dict[str, Any], table: str, call_id: str, want: int = 1) -> list[dict[str, Any]]:
    """Rows of one call (waits a little for acc's writer to store ``want`` of them)."""
    found: list[dict[str, Any]] = []
    for _ in range(50):
        conn = sqlite3.connect(k["db"])
        conn.row_factory = sqlite3.Row
        try:
            col = "call_id" if table == "acc_cdrs_ksr" else "callid"
            name = "acc_cdrs" if table == "acc_cdrs_ksr" else table
            found = [
                dict(r) for r in conn.execute(f"SELECT * FROM {name} WHERE {col} = ?", (call_id,))
            ]
        except sqlite3.OperationalError:
            found = []
        finally:
            conn.close()
        if len(found) >= want:
            break
        time.sleep(0.1)
    return found


def udp_final(k: dict[str, Any], text: str, src: str = "127.0.0.1", timeout: float = 3.0) -> str:
    """Send a request from ``src``; the first line of its final answer ('' if none)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    try:
        sport = s.getsockname()[1]
        data = text.format(src=src, sport=sport, host=HOST, port=k["port"])
        s.sendto(data.replace("\n", "\r\n").encode(), (HOST, k["port"]))
        while True:
            try:
                reply = s.recvfrom(65535)[0].decode(errors="replace")
            except TimeoutError:
                return ""
            first = reply.split("\r\n", 1)[0]
            if not first.startswith("SIP/2.0 1"):
                return first
    finally:
        s.close()


REQ = """{method} sip:{user}{host}:{port} SIP/2.0
Via: SIP/2.0/UDP {src}:{sport};branch=z9hG4bK-{tag};rport
Max-Forwards: 70
From: <sip:tester@example.invalid>;tag=f-{tag}
To: <sip:{user}{host}:{port}>
Call-ID: {tag}@kemi-examples
CSeq: 1 {method}
Contact: <sip:tester@{src}:{sport}>
User-Agent: ksr-tests
Content-Length: 0

"""


def req(method: str, user: str, tag: str) -> str:
    at = f"{user}@" if user else ""
    return (
        REQ.replace("{method}", method)
        .replace("{user}", at)
        .replace("{tag}", f"{tag}-{time.monotonic_ns()}")
    )


def test_register_two_users_with_digest(ksr: dict[str, Any]) -> None:
    for user in USERS:
        port = free_port()
        register(ksr, user, port)  # 401, then 200
        ksr["uas"][user] = port


def test_authenticated_call_gives_acc_rows_and_a_cdr(ksr: dict[str, Any]) -> None:
    bob = ksr["uas"].get("bob") or free_port()
    register(ksr, "bob", bob)
    callee = subprocess.Popen(
        sipp_command(DIALOG_SIPP / "uas_answer.xml", port=bob, timeout=20),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    call_id = f"kemi-call-{ksr['port']}"
    try:
        time.sleep(0.3)
        caller = sipp(
            ksr,
            SIPP / "uac_auth_call.xml",
            "-s",
            "bob",
            "-key",
            "caller",
            "alice",
            "-au",
            "alice",
            "-ap",
            USERS["alice"],
            "-cid_str",
            call_id,
        )
        out, _ = callee.communicate(timeout=40)
    finally:
        if callee.poll() is None:
            callee.kill()
            callee.wait()
    log = ksr["log"].read_text()
    assert caller.returncode == 0, caller.stdout[-2000:] + log[-3000:]  # 407, 180, 200, BYE 200
    assert callee.returncode == 0, out[-2000:] + log[-3000:]
    acc = rows(ksr, "acc", call_id, want=2)
    assert [(r["method"], r["sip_code"], r["sip_reason"]) for r in acc] == [
        ("INVITE", "200", "OK"),
        ("BYE", "200", "OK"),
    ]
    assert (acc[0]["src_user"], acc[0]["dst_user"], acc[0]["src_domain"]) == ("alice", "bob", HOST)
    (cdr,) = rows(ksr, "acc_cdrs_ksr", call_id)
    assert (cdr["caller"], cdr["callee"], cdr["status"], cdr["end_reason"]) == (
        "alice",
        "bob",
        200,
        "caller-bye",
    )
    assert "ACC: transaction answered:" in log


def test_cancel_is_a_missed_call(ksr: dict[str, Any]) -> None:
    bob = free_port()
    register(ksr, "bob", bob)
    callee = subprocess.Popen(
        sipp_command(SIPP / "uas_ring.xml", port=bob, timeout=20),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    call_id = f"kemi-cancel-{ksr['port']}"
    try:
        time.sleep(0.3)
        caller = sipp(ksr, SIPP / "uac_cancel.xml", "-s", "bob", "-cid_str", call_id)
        out, _ = callee.communicate(timeout=40)
    finally:
        if callee.poll() is None:
            callee.kill()
            callee.wait()
    log = ksr["log"].read_text()
    assert caller.returncode == 0, caller.stdout[-2000:] + log[-3000:]  # 180, 200, 487
    assert callee.returncode == 0, out[-2000:] + log[-3000:]
    (missed,) = rows(ksr, "missed_calls", call_id)
    assert (missed["method"], missed["sip_code"]) == ("INVITE", "487")
    assert rows(ksr, "acc", call_id, want=0) == []


def test_unknown_user_is_404(ksr: dict[str, Any]) -> None:
    assert udp_final(ksr, req("INVITE", "carol", "unknown")) == "SIP/2.0 404 Not Found"


def test_options_keepalive(ksr: dict[str, Any]) -> None:
    assert udp_final(ksr, req("OPTIONS", "", "keepalive")) == "SIP/2.0 200 Keepalive"


def test_flood_from_one_address_is_banned(ksr: dict[str, Any]) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.3", 0))
    s.settimeout(0.05)
    sport = s.getsockname()[1]
    answered = 0
    try:
        for i in range(60):  # pike allows 16 per 2 s from one address
            text = req("OPTIONS", "", f"flood{i}").format(
                src="127.0.0.3", sport=sport, host=HOST, port=ksr["port"]
            )
            s.sendto(text.replace("\n", "\r\n").encode(), (HOST, ksr["port"]))
        deadline = time.time() + 2
        while time.time() < deadline:
            try:
                s.recvfrom(65535)
                answered += 1
            except TimeoutError:
                continue
    finally:
        s.close()
    assert 0 < answered < 60
    # banned: nothing more from that address (htable ipban), others are still served
    assert udp_final(ksr, req("OPTIONS", "", "after"), src="127.0.0.3", timeout=1.0) == ""
    assert udp_final(ksr, req("OPTIONS", "", "other")) == "SIP/2.0 200 Keepalive"
    assert "127.0.0.3" in ksr["log"].read_text()  # the script's pike line names it
