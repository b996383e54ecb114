"""`ksr check SCRIPT` as users run it: a subprocess, every problem with file:line, exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO


def check(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ksr", "check", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )


def test_check_reports_every_problem(tmp_path: Path) -> None:
    script = tmp_path / "bad.lua"
    script.write_text(
        "function ksr_request_route()\n"
        "  KSR.sl.sl_send_reply(200, 'ok')\n"
        "  KSR.sl.sl_send_replyy(200, 'typo')\n"
        "  KSR.nosuchmod.relay()\n"
        "  if then\n"
        "end\n"
    )
    r = check(script)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert any(
        line.startswith(f"{script}:3: unknown function KSR.sl.sl_send_replyy") for line in lines
    )
    assert any(
        line.startswith(f"{script}:4: unknown function KSR.nosuchmod.relay")
        and "loadmodule" in line
        for line in lines
    )
    assert any(line.startswith(f"{script}:5: syntax error") for line in lines)
    assert "3 problem(s)" in r.stderr


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("ok.lua", "function ksr_request_route()\n  KSR.sl.sl_send_reply(404, 'Not Found')\nend\n"),
        (
            "ok.py",
            "import KSR\n\nclass R:\n    def ksr_request_route(self, msg):\n"
            "        KSR.sl.sl_send_reply(404, 'Not Found')\n\ndef mod_init():\n    return R()\n",
        ),
    ],
)
def test_check_accepts_a_good_script(tmp_path: Path, name: str, text: str) -> None:
    script = tmp_path / name
    script.write_text(text)
    r = check(script)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_check_python_error_has_line(tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text(
        "import KSR\n\nclass R:\n    def ksr_request_route(self, msg):\n"
        "        KSR.hdr.appendd('X: 1\\r\\n')\n\ndef mod_init():\n    return None\n"
    )
    r = check(script)
    assert r.returncode == 1
    assert f"{script}:5: unknown function KSR.hdr.appendd" in r.stderr
    assert "mod_init() returned None" in r.stderr
