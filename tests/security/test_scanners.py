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
import subprocess
import sys
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
