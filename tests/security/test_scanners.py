"""The real sipvicious tools (Debian package) against ksr running the default script with
authentication, with one worker and with two.

- svcrack, User-Agent changed and from a source that is not ksr's own address: every failed
  guess is logged, the answers slow down, the source is banned within seconds and the password
  (in the dictionary, after 30 wrong ones) is never found.
- svcrack, svmap and svwar as shipped (User-Agent 'friendly-scanner'): no answer at all.
- svwar with another User-Agent: every extension gets the same answer; it finds nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import config_text
from tests.support import SCRIPTS, free_port, ksr_process, wait_workers

pytestmark = pytest.mark.skipif(
    shutil.which("svcrack") is None, reason="sipvicious (Debian package) is not installed"
)

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"  # sipvicious lives in Debian's Python
PASSWORD = "Secr3t-pw"
FAILURE = re.compile(
    r"auth failure: src=(?P<ip>127\.0\.0\.\d+) port=\d+ proto=udp user=\"1000\" "
    r"realm=\"127\.0\.0\.1\" method=\"REGISTER\" reason=\"wrong password\" failures=(?P<n>\d+)"
)


@pytest.fixture(scope="module", params=[1, 2], ids=["n1", "n2"])
def ksr(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("scanners")
    # qop=auth as in the issue (svcrack 0.3.3 answers only qop challenges correctly); the
    # alias makes sip:127.0.0.1 ours on this port, so the right password would be accepted
    text = (
        config_text(tmp, auth=True)
        .replace('secret = "e2e-test-secret"', 'secret = "e2e-test-secret"\nqop = "auth"')
        .replace("[core]\n", '[core]\nalias = ["127.0.0.1"]\n', 1)
    )
    cfg = tmp / "ksr.toml"
    cfg.write_text(text)
    add = [sys.executable, "-m", "ksr", "subscriber", "add", "1000@127.0.0.1", PASSWORD]
    res = subprocess.run([*add, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    n = request.param
    args = ["-n", str(n)] if n > 1 else []

    with ksr_process(SCRIPTS / "default.lua", text, extra_args=args, ready=wait_workers(n)) as k:
        k["tmp"] = tmp
        k["n"] = n
        yield k


def sv(
    k: dict[str, Any], tool: str, *args: str, ua: str | None = None, src: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run a sipvicious tool against ksr: as shipped, or disguised (``ua``) from ``src``."""
    cmd = [tool] if ua is None else [PYTHON, str(HERE / "sv_disguised.py"), ua, tool]
    cmd += [*args, "-p", str(k["port"]), "-P", str(free_port()), "127.0.0.1"]
    env = {**os.environ, "KSR_SV_BIND": src}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    print(f"$ {' '.join(cmd[-8:])}\n{res.stdout}{res.stderr}")  # shown with -s: the report
    return res


def test_svcrack_is_slowed_banned_and_every_failure_logged(ksr: dict[str, Any]) -> None:
    words = ksr["tmp"] / "words.txt"
    words.write_text("".join(f"guess{i}\n" for i in range(1, 31)) + PASSWORD + "\n")
    res = sv(
        ksr, "svcrack", "-u", "1000", "-d", str(words), "--maximumtime", "3",
        ua="Linphone/5.0", src="127.0.0.9",
    )  # fmt: skip
    out = res.stdout + res.stderr
    assert "The password for" not in out
    assert "found nothing" in out
    log = ksr["log"].read_text()
    failures = [m for m in FAILURE.finditer(log) if m["ip"] == "127.0.0.9"]
    # each failed guess is one line; one worker counts 1, 2, 3...; two workers are told of
    # each other's failures a moment later, so their counts may repeat but never run ahead
    counts = sorted(int(m["n"]) for m in failures)
    if ksr["n"] == 1:
        assert counts == list(range(1, len(counts) + 1)), log[-3000:]
    else:
        assert max(counts) <= len(counts), log[-3000:]
    assert len(counts) >= 3, log[-3000:]  # enough to be slowed down
    banned = re.search(r"pike blocking .*127\.0\.0\.9|auth ban: src=127\.0\.0\.9 ", log)
    assert banned, log[-3000:]
    assert "Traceback" not in log


def test_scanners_as_shipped_get_no_answer(ksr: dict[str, Any]) -> None:
    res = sv(ksr, "svmap")
    assert "found nothing" in res.stdout + res.stderr
    res = sv(ksr, "svwar", "-e", "990-1010")
    assert "found nothing" in res.stdout + res.stderr
    res = sv(ksr, "svcrack", "-u", "1000", "-r", "1-5")
    assert "no server response" in res.stdout + res.stderr


def test_svwar_disguised_learns_nothing(ksr: dict[str, Any]) -> None:
    # 1000 exists, the others do not: all get the same challenge
    res = sv(ksr, "svwar", "--force", "-e", "995-1005", ua="Linphone/5.0", src="127.0.0.12")
    out = res.stdout + res.stderr
    assert "found nothing" in out


def test_a_flood_is_banned_in_every_worker(ksr: dict[str, Any]) -> None:
    """pike and the ipban htable are shared: a flood that only worker 0 sees bans the source
    in worker 1 too."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.20", 0))
    s.settimeout(0.5)
    me = s.getsockname()[1]

    def owned_by(worker: int) -> str:
        """A Call-ID the given worker owns (docs/workers.md: crc32 % N)."""
        while True:
            call_id = f"flood-{uuid.uuid4().hex[:10]}"
            if zlib.crc32(call_id.encode()) % 2 == worker:
                return call_id

    def ask(i: int, wait: bool = True) -> bool:
        # the flood goes to worker 0; the questions after it to worker 1
        call_id = owned_by(0 if i < 100 else 1)
        s.sendto(
            f"OPTIONS sip:127.0.0.1:{ksr['port']} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.20:{me};branch=z9hG4bK-{call_id};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:f@127.0.0.20>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".encode(),
            ("127.0.0.1", ksr["port"]),
        )
        if not wait:
            return False
        try:
            return s.recv(65535).startswith(b"SIP/2.0 200 ")
        except TimeoutError:
            return False

    assert ask(0)
    for i in range(1, 100):  # at once: far over pike's 30 per 2 s
        ask(i, wait=False)
    time.sleep(1)
    s.settimeout(0.2)
    try:
        while s.recv(65535):  # the answers sent before the ban
            pass
    except TimeoutError:
        pass
    s.settimeout(0.5)
    later = [ask(100 + i) for i in range(12)]
    s.close()
    assert not any(later), later
    assert "pike blocking OPTIONS" in ksr["log"].read_text()
