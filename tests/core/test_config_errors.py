"""Configuration mistakes: `ksr run` refuses to start and says file:line, the key and a hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ksr.cli import main
from tests.support import REPO

SCRIPT = REPO / "scripts" / "default.lua"

CASES = [
    (
        "top-level-typo",
        'loadmodule = ["sl"]\nlisen = ["udp:127.0.0.1:0"]\n',
        2,
        ["unknown key 'lisen'", "'core.listen'"],
    ),
    ("belongs-in-core", "\nchildren = 2\n", 2, ["unknown key 'children'", "[core] table"]),
    (
        "core-typo",
        '[core]\nlisten = ["udp:127.0.0.1:0"]\nchildern = 2\n',
        3,
        ["'core.childern'", "'children'"],
    ),
    ("core-type", '[core]\nchildren = "two"\n', 2, ["'core.children'", "valid integer", "'two'"]),
    ("core-value", "[core]\nchildren = 0\n", 2, ["'core.children'", "at least 1"]),
    (
        "kemi-typo",
        '[core.kemi]\nrequest_route_callbak = "x"\n',
        2,
        ["'core.kemi.request_route_callbak'", "'request_route_callback'"],
    ),
    ("list-item-type", "[core]\nlisten = [5060]\n", 2, ["'core.listen.0'", "valid string"]),
    (
        "modparam-typo",
        '\n[modparam.jsonrpcs]\npretty_format = 1\ndgram_sockt = "/tmp/x"\n',
        4,
        ["[modparam.jsonrpcs]", "unknown parameter 'dgram_sockt'", "'dgram_socket'"],
    ),
    (
        "modparam-type",
        '[modparam.sl]\ndefault_code = "x"\n',
        2,
        ["[modparam.sl]", "'default_code'", "valid integer"],
    ),
    (
        "modparam-not-loaded",
        'loadmodule = ["sl"]\n\n[modparam.tm]\nfr_timer = 1\n',
        3,
        ["[modparam.tm]", "not in loadmodule", 'add "tm" to loadmodule'],
    ),
    (
        "unknown-module",
        '\nloadmodule = ["sl", "nosuchmod"]\n',
        2,
        ["unknown module 'nosuchmod'", "available:", "sl"],
    ),
    ("bad-toml", "[core]\nchildren = \n", 2, ["invalid TOML"]),
]


@pytest.mark.parametrize(("name", "text", "line", "needles"), CASES, ids=[c[0] for c in CASES])
def test_config_error_names_file_line_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    line: int,
    needles: list[str],
) -> None:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    rc = main(["run", "--config", str(cfg), "--script", str(SCRIPT)])
    err = capsys.readouterr().err
    assert rc != 0
    assert f"{cfg}:{line}: " in err
    for needle in needles:
        assert needle in err


def test_ksr_run_subprocess_exits_nonzero_with_location(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        'loadmodule = ["sl", "jsonrpcs"]\n[core]\nlisten = ["udp:127.0.0.1:0"]\n\n'
        '[modparam.jsonrpcs]\ndgram_mode = "rw"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "ksr", "run", "--config", str(cfg), "--script", str(SCRIPT)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode != 0
    assert f"{cfg}:6: [modparam.jsonrpcs]: 'dgram_mode'" in out.stderr


def test_good_config_loads(tmp_path: Path) -> None:
    from ksr.core.config import DEFAULT_MODULES, load_config

    cfg = tmp_path / "ok.toml"
    cfg.write_text(
        '[core]\nlisten = ["udp:127.0.0.1:0"]  # comment\nchildren = 2\n[core.kemi]\nreply_route_callback = "r"\n'
    )
    c = load_config(cfg)
    assert c.core.children == 2
    assert c.loadmodule == DEFAULT_MODULES
    assert "jsonrpcs" in DEFAULT_MODULES
