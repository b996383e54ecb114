"""``ksr subscriber add/rm/list --config`` on the auth_db db_url of a config file."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from ksr.db import open_store
from ksr.modules.auth_db.subscribers import Subscribers


def ksr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ksr", "subscriber", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_add_list_rm(tmp_path: Path, db_url: str) -> None:
    cfg = tmp_path / "ksr.toml"
    cfg.write_text(f'[modparam.auth_db]\ndb_url = "{db_url}"\n')
    assert ksr("add", "alice@example.com", "pw1", "--config", str(cfg)).returncode == 0
    assert ksr("add", "bob@example.com", "pw2", "--config", str(cfg)).returncode == 0
    assert ksr("list", "--config", str(cfg)).stdout.split() == [
        "alice@example.com",
        "bob@example.com",
    ]
    store = open_store(db_url)
    row = Subscribers(store).lookup("alice", "example.com")
    store.close()
    assert row is not None
    assert row["ha1"] == hashlib.md5(b"alice:example.com:pw1").hexdigest()
    assert ksr("rm", "alice@example.com", "--config", str(cfg)).returncode == 0
    gone = ksr("rm", "alice@example.com", "--config", str(cfg))
    assert gone.returncode == 1
    assert "no subscriber" in gone.stderr
    assert ksr("list", "--config", str(cfg)).stdout.split() == ["bob@example.com"]
    assert ksr("add", "nodomain", "x", "--config", str(cfg)).returncode == 1
