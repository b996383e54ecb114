"""The default RPC socket: /run/ksr when ksr may write there (a service), else /tmp; the
client looks in the same places; $KSR_RPC_SOCKET overrides both."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ksr import rpc_client
from ksr.core import rundir
from ksr.core.config import Config
from tests.support import running_server, write_script


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "run-ksr"
    monkeypatch.delenv("KSR_RPC_SOCKET", raising=False)
    monkeypatch.setattr(rundir, "RUN_DIR", str(d))
    monkeypatch.setattr(rundir, "RUN_SOCKET", str(d / "ksr_rpc.sock"))
    return d


def test_fallback_without_a_run_dir(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert rundir.server_rpc_socket() == rundir.FALLBACK_SOCKET
    assert rundir.client_rpc_socket() == rundir.FALLBACK_SOCKET
    monkeypatch.setenv("KSR_RPC_SOCKET", "/x/y.sock")
    assert rundir.server_rpc_socket() == rundir.client_rpc_socket() == "/x/y.sock"


async def test_server_listens_in_the_run_dir_and_the_client_finds_it(run_dir: Path) -> None:
    run_dir.mkdir()
    script = write_script(run_dir.parent, "function ksr_request_route() end\n")
    cfg = Config.model_validate(
        {"loadmodule": ["sl", "jsonrpcs"], "core": {"listen": ["udp:127.0.0.1:0"]}}
    )
    async with running_server(cfg, script):
        assert (run_dir / "ksr_rpc.sock").exists()
        assert rpc_client.default_socket() == str(run_dir / "ksr_rpc.sock")
        req = rpc_client.build_request("core.echo", ["s:hi"], 1)
        reply = await trio.to_thread.run_sync(rpc_client.call, rpc_client.default_socket(), req)
        assert reply["result"] == ["hi"]
