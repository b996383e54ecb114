"""`ksr rpc` as a subprocess against `ksr run` as a subprocess, over the real unix socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from tests.support import REPO, ksr_process, write_script

SCRIPT = "function ksr_request_route() KSR.sl.sl_send_reply(200, 'OK') end\n"


def ksr_rpc(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KSR_RPC_SOCKET"}
    return subprocess.run(
        [sys.executable, "-m", "ksr", "rpc", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        env=env,
    )


def test_ksr_rpc_against_a_running_server(tmp_path: Path) -> None:
    sock = os.path.join(tempfile.gettempdir(), f"ksr_rpc_cli_{uuid.uuid4().hex[:10]}.sock")
    config = f'[modparam.jsonrpcs]\ndgram_socket = "{sock}"\npretty_format = 1\n'
    with ksr_process(write_script(tmp_path, SCRIPT), config_text=config) as ksr:
        up = ksr_rpc("--socket", sock, "core.uptime")
        assert up.returncode == 0, up.stderr
        assert set(json.loads(up.stdout)) == {"now", "up_since", "uptime"}

        echo = ksr_rpc("--socket", sock, "core.echo", "5", "s:5", "i:7", "abc", "1.5")
        assert json.loads(echo.stdout) == [5, "5", 7, "abc", 1.5]

        missing = ksr_rpc("--socket", sock, "no.such.method")
        assert missing.returncode == 1
        assert json.loads(missing.stderr) == {"code": 500, "message": "Method Not Found"}

        by_config = ksr_rpc(
            "--config", str(ksr["dir"] / "ksr.toml"), "stats.get_statistics", "core:rcv_requests"
        )
        assert by_config.returncode == 0, by_config.stderr
        assert json.loads(by_config.stdout) == ["core:rcv_requests = 0"]
    assert not os.path.exists(sock)  # SIGTERM stopped the server cleanly: socket removed
    down = ksr_rpc("--socket", sock, "core.uptime")
    assert down.returncode == 2
    assert sock in down.stderr
    assert "no ksr server is answering" in down.stderr
