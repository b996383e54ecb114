"""Helpers for tests that run ksr as a subprocess: configs, subscribers, a blocking UDP peer."""

from __future__ import annotations

import socket
from pathlib import Path

from ksr.db import open_store
from ksr.modules.auth_db.subscribers import Subscribers
from ksr.sip.message import Request, Response, parse_message_untrusted
from tests.registrar.scripts import script

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "bench" / "sipp" / "register_auth.xml"


def config_text(url: str, db_mode: int, auth: bool = True) -> str:
    mods = '"sl", "usrloc", "registrar"' + (', "auth", "auth_db"' if auth else "")
    return f'loadmodule = [{mods}]\n[modparam.usrloc]\ndb_url = "{url}"\ndb_mode = {db_mode}\n' + (
        f'[modparam.auth_db]\ndb_url = "{url}"\n[modparam.auth]\nsecret = "shared-test-secret"\n'
        if auth
        else ""
    )


def write_script_file(tmp: Path, lang: str = "lua", auth: bool = True) -> Path:
    suffix, text = script(lang, auth)
    p = tmp / f"reg{suffix}"
    p.write_text(text)
    return p


def add_users(url: str, n: int, csv: Path | None = None, domain: str = "127.0.0.1") -> None:
    store = open_store(url)
    t = Subscribers(store)
    lines = ["SEQUENTIAL"]
    for i in range(n):
        user, pw = f"u{i:05d}", f"pw{i}"
        t.add(user, domain, pw)
        lines.append(f"{user};{domain};{pw}")
    store.close()
    if csv is not None:
        csv.write_text("\n".join(lines) + "\n")


class SyncPeer:
    """A blocking UDP peer for tests that talk to a ksr subprocess."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = int(self.sock.getsockname()[1])

    def send(self, text: str, port: int) -> None:
        self.sock.sendto(text.encode(), ("127.0.0.1", port))

    def recv(self) -> Request | Response:
        data, _ = self.sock.recvfrom(65535)
        return parse_message_untrusted(data)

    def close(self) -> None:
        self.sock.close()
