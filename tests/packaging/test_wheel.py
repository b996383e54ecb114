"""The wheel as a user gets it: built from a copy of the source tree, installed into a fresh
venv (pip may fetch the dependencies from its cache or PyPI), then ``ksr run`` with no script
argument serves the bundled default script and answers OPTIONS."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from ksr import __version__, native
from tests.core.test_mpath import ROUTE, user_module
from tests.support import REPO, free_port, sip_request, wait_answering, write_script

# what `git clean` would remove plus the working venv: not part of a source tree
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "var"
)


pytestmark = pytest.mark.packaging


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src") / "ksr"
    shutil.copytree(REPO, src, symlinks=True, ignore=_NOT_SOURCE)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=600,  # mypyc and the C compiler: a minute or two on a busy machine
    )
    (whl,) = out.glob("ksr-*.whl")
    return whl


def test_wheel_holds_only_ksr_the_scripts_and_the_license(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"ksr", f"ksr-{__version__}.dist-info"}
    for needed in (
        "ksr/scripts/default.lua",
        "ksr/scripts/default.py",
        "ksr/modules/__init__.py",
        "ksr/modules/sl/__init__.py",
        "ksr/py.typed",
    ):
        assert needed in names
    assert any(n.endswith("dist-info/licenses/LICENSE") for n in names)
    meta = zipfile.ZipFile(wheel).read(f"ksr-{__version__}.dist-info/METADATA").decode()
    assert "License-Expression: GPL-2.0-or-later" in meta
    assert "Requires-Dist: h11>=0.16" in meta


def test_installed_wheel_runs_the_default_script(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / "bin"
    subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    # nothing from the checkout: another folder, no PYTHONPATH
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    site = subprocess.run(
        [str(bindir / "python"), "-c", "import ksr, ksr.modules.sl as m; print(m.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert site.startswith(str(env_dir))
    version = subprocess.run(
        [str(bindir / "ksr"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith(f"ksr {__version__} ")
    if not native.pure_requested(os.environ):  # the wheel holds the compiled modules
        assert "compiled with mypyc" in version, version

    port = free_port()
    log = tmp_path / "ksr.log"
    env["KSR_RPC_SOCKET"] = str(tmp_path / "rpc.sock")
    args = [
        str(bindir / "ksr"),
        "run",
        "-l",
        f"udp:127.0.0.1:{port}",
        "-l",
        f"tcp:127.0.0.1:{port}",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_answering(port, proc, log)  # OPTIONS until it answers
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(5)
            s.sendto(
                sip_request("OPTIONS", f"sip:127.0.0.1:{port}", 9).encode(), ("127.0.0.1", port)
            )
            reply = s.recv(65535).decode()
        assert reply.startswith("SIP/2.0 200 "), reply  # the default script's keepalive answer
        assert "default.lua" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(10)

    # a module folder of the user's (mpath) next to the installed ksr.modules, using one of them
    mods = user_module(tmp_path / "mods")
    cfg = tmp_path / "ksr.toml"
    cfg.write_text(f'loadmodule = ["sl", "greeter"]\nmpath = ["{mods}"]\n')
    route = write_script(tmp_path, ROUTE)
    check = subprocess.run(
        [str(bindir / "ksr"), "check", "--config", str(cfg), str(route)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert "OK (lua, 1 KSR calls checked)" in check.stdout
