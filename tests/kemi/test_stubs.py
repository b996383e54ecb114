"""The generated editor files and API docs match the export registry (drift test)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import lupa.lua51

from ksr.kemi.stubs import drift, full_registry, render_all, write_all
from tests.support import REPO

REGENERATE = "run `python -m ksr.kemi.stubs` (or `ksr stubs`) and commit the result"


def test_generated_files_match_registry() -> None:
    reg, _skipped = full_registry()
    stale = drift(REPO, render_all(reg))
    assert stale == [], f"out of date: {', '.join(stale)}; {REGENERATE}"


def test_generated_files_are_valid(tmp_path: Path) -> None:
    reg, _ = full_registry()
    files = render_all(reg)
    write_all(tmp_path, files)
    tree = ast.parse((tmp_path / "ksr/KSR.pyi").read_text())
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"_sl", "_pv", "_hdr", "_x"} <= classes
    lua = lupa.lua51.LuaRuntime()
    lua.execute((tmp_path / "ksr/data/KSR.lua").read_text())
    assert lua.eval("type(KSR.sl.sl_send_reply)") == "function"
    assert lua.eval("type(KSR.x.exit)") == "function"
    index = (tmp_path / "docs/api/index.md").read_text()
    assert "[KSR.sl](sl.md)" in index
    sl = (tmp_path / "docs/api/sl.md").read_text()
    assert "## `KSR.sl.sl_send_reply(code: int, reason: str) -> int`" in sl


def test_drift_is_detected(tmp_path: Path) -> None:
    reg, _ = full_registry()
    files = render_all(reg)
    write_all(tmp_path, files)
    assert drift(tmp_path, files) == []
    (tmp_path / "docs/api/stale.md").write_text("old page\n")
    pyi = tmp_path / "ksr/KSR.pyi"
    pyi.write_text(pyi.read_text().replace("def sl_send_reply", "def sl_send_replyy"))
    assert drift(tmp_path, files) == ["docs/api/stale.md", "ksr/KSR.pyi"]


def test_cli_check_exit_code() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ksr", "stubs", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO),
    )
    assert r.returncode == 0, r.stderr
