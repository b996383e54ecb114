"""The build that runs (docs/build.md): the install compiles ksr's hot sans-IO modules with
mypyc, ``KSR_PURE_PYTHON=1`` imports their pure-Python sources instead, and a source changed
since the build runs as the source, never as the stale extension module."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ksr import native

REPO = Path(__file__).resolve().parent.parent

_PROBE = (
    "import importlib, json, ksr.native as n\n"
    "print(json.dumps({'build': n.BUILD, 'files': [importlib.import_module(m).__file__"
    " for m in n.COMPILED]}))"
)


def probe(**env: str) -> tuple[str, list[str]]:
    """BUILD and the files of the COMPILED modules in a new interpreter."""
    base = {k: v for k, v in os.environ.items() if k != native.ENV}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    found = json.loads(out.stdout)
    return found["build"], found["files"]


def version(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != native.ENV}
    return subprocess.run(
        [sys.executable, "-m", "ksr", "--version"],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_pure_python_on_request() -> None:
    build, files = probe(KSR_PURE_PYTHON="1")
    assert build == "pure Python (KSR_PURE_PYTHON=1)"
    assert [Path(f).suffix for f in files] == [".py"] * len(native.COMPILED)
    assert "pure Python (KSR_PURE_PYTHON=1)" in version(KSR_PURE_PYTHON="1")


def test_the_install_compiled() -> None:
    """Fails when the install fell back to pure Python (no compiler, mypyc failed) or the
    sources changed since: ``make native`` compiles them again."""
    stamp = importlib.import_module(native.STAMP)
    if not stamp.COMPILED and stamp.DETAIL.startswith(native.ENV):
        pytest.skip(f"installed with {native.ENV}=1: nothing compiled")
    build, files = probe()
    assert build.startswith("compiled with mypyc"), build
    assert all(f.endswith(".so") for f in files), files
    assert build in version()


def test_a_changed_source_is_run_as_source(tmp_path: Path) -> None:
    """The digest the build records covers every compiled source: a change in any of them
    makes ksr run the sources."""
    for path in native.source_paths(REPO):
        dest = tmp_path / path.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    built = native.source_digest(tmp_path)
    assert built == native.source_digest(REPO)
    for path in native.source_paths(tmp_path):
        text = path.read_text()
        path.write_text(text + "# changed\n")
        assert native.source_digest(tmp_path) != built, path
        path.write_text(text)
