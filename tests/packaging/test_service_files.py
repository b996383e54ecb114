"""The files for running ksr as a service hold together: the sample /etc/ksr/ksr.toml and the
compose configuration start real servers (the latter with -n 2 on real PostgreSQL and Redis),
systemd accepts the unit, and the Dockerfile/compose.yaml name files that exist. (No Docker
daemon here: docs/running-as-a-service.md says how the image was checked.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ksr.core.config import DEFAULT_SCRIPT, load_config
from tests import services
from tests.registrar.conftest import _cleanup, unique_prefix
from tests.support import REPO, ksr_process, wait_answering

PACKAGING = REPO / "packaging"


def localized(text: str, tmp: Path) -> str:
    """A service configuration made runnable here: files in tmp, SIP on a free port (given by
    ksr_process), the RPC socket private."""
    text = text.replace("/var/lib/ksr", str(tmp))
    return re.sub(r"(?m)^listen = .*$", "", text)


def test_sample_config_serves_the_default_script(tmp_path: Path) -> None:
    text = (PACKAGING / "ksr.toml").read_text()
    cfg = load_config(str(PACKAGING / "ksr.toml"))  # as shipped: valid
    assert cfg.core.log_facility == "LOG_DAEMON"
    # every [section] of the file starts with a comment saying what it is for
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("["):
            assert lines[i + 1].startswith("#"), (
                f"packaging/ksr.toml:{i + 1}: {line} has no comment"
            )
    with ksr_process(DEFAULT_SCRIPT, localized(text, tmp_path), ready=wait_answering) as k:
        # UDP answers while the modules still start; the line comes once all have started
        assert _log_says(k["log"], "listening on")


def _log_says(log: Path, text: str, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.postgres
@pytest.mark.redis
def test_compose_config_runs_two_workers_on_postgres_and_redis(tmp_path: Path) -> None:
    prefix = unique_prefix()
    pg, rd = services.pg_url(), services.redis_url()
    text = (PACKAGING / "compose" / "ksr.toml").read_text()
    assert "postgres://ksr:ksr@postgres:5432/ksr" in text
    assert "redis://redis:6379/0" in text
    text = text.replace("postgres://ksr:ksr@postgres:5432/ksr", f"{pg}?prefix={prefix}")
    text = text.replace("redis://redis:6379/0", f"{rd}?prefix={prefix}")
    try:
        with ksr_process(DEFAULT_SCRIPT, localized(text, tmp_path), ready=wait_answering) as k:
            log = k["log"].read_text()
            assert "runs 2 workers" in log
        add = subprocess.run(
            [sys.executable, "-m", "ksr", "subscriber", "add", "-f", str(k["dir"] / "ksr.toml")]
            + ["alice@example.com", "secret"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert add.returncode == 0, add.stderr
    finally:
        _cleanup(pg, prefix)
        _cleanup(rd, prefix)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = (PACKAGING / "systemd" / "ksr.service").read_text()
    assert "Type=notify" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "RuntimeDirectory=ksr" in unit  # /run/ksr: the RPC socket's default folder
    ksr_bin = Path(sys.executable).with_name("ksr")
    assert ksr_bin.exists()
    local = tmp_path / "ksr.service"
    local.write_text(unit.replace("/opt/ksr/bin/ksr", str(ksr_bin)))
    out = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "", out.stderr


def test_dockerfile_and_compose_name_real_files() -> None:
    docker = (REPO / "Dockerfile").read_text()
    for src in re.findall(r"(?m)^COPY (?!--from)(\S+) ", docker):
        assert (REPO / src).exists(), f"Dockerfile copies a missing {src}"
    users = re.findall(r"(?m)^USER (\S+)", docker)
    assert users, "the image must name its user"
    assert users[-1] not in ("root", "0"), "the image must not run as root"
    assert "/run/ksr" in docker  # the RPC socket's folder, writable by the user
    assert 'CMD ["run", "--config", "/etc/ksr/ksr.toml"]' in docker
    compose = (REPO / "compose.yaml").read_text()
    for src in re.findall(r"- \./(\S+?):", compose):
        assert (REPO / src).exists(), f"compose.yaml mounts a missing {src}"
