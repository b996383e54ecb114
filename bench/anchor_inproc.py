"""The reference workload (../shared/anchor) in one process: its script and ksr configuration
for bench.profile_calls / bench.profile_register, and a REGISTER that puts a callee in the
location table the way bench.anchor's sipp callees do."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .anchor import ANCHOR, render
from .inproc import PROXY, Wire


def anchor_setup(tmp: Path, python: bool = False, db_mode: int = 0) -> tuple[Path, dict[str, Any]]:
    """(script, config) of the anchor: ksr-anchor.toml rendered for one process (children 1,
    usrloc in memory unless db_mode), minus the RPC transports (no sockets here)."""
    text = render(
        (ANCHOR / "ksr-anchor.toml").read_text(),
        PROXY[1],
        CHILDREN="1",
        DB_MODE=str(db_mode),
        DB_URL=f"sqlite://{tmp / 'location.sqlite'}",
    )
    config = tomllib.loads(text)
    config["loadmodule"] = [
        m for m in config["loadmodule"] if m not in ("jsonrpcs", "xhttp", "ctl")
    ]
    for m in ("jsonrpcs", "xhttp"):
        config.get("modparam", {}).pop(m, None)
    config["core"]["listen"] = [f"udp:{PROXY[0]}:{PROXY[1]}"]
    script = ANCHOR / ("kemi-routing.py" if python else "kemi-routing.lua")
    return script, config


def register_user(server: Any, wire: Wire, sock: Any, user: str, contact: tuple[str, int]) -> None:
    """REGISTER ``user`` with Contact at ``contact`` (as sipp's reg.xml writes it)."""
    ua = ("127.0.0.1", 5099)
    msg = (
        f"REGISTER sip:{PROXY[0]}:{PROXY[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ua[0]}:{ua[1]};branch=z9hG4bK-reg-{user}\r\n"
        f"From: <sip:{user}@{PROXY[0]}>;tag=reg{user}\r\nTo: <sip:{user}@{PROXY[0]}>\r\n"
        f"Call-ID: reg-{user}@bench\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:{user}@{contact[0]}:{contact[1]}>\r\nExpires: 3600\r\nMax-Forwards: 70\r\n"
        "User-Agent: sipp-anchor\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    server.receive(msg, ua[0], ua[1], sock)
    got = wire.take(ua[1])
    if len(got) != 1 or got[0][8:11] != b"200":
        raise RuntimeError(f"REGISTER {user}: {[g[:40] for g in got]}")
