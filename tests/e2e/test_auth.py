"""The default scripts with digest authentication on ([core.defines] WITH_AUTH = 1), users
added with ``ksr subscriber add``: REGISTER and calls from local users are challenged, wrong
passwords are refused, and an authenticated call goes through. Lua and Python alike."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, ksr_process

from .helpers import (
    DIALOG_SIPP,
    LANGS,
    SIPP,
    Peer,
    cdrs,
    config_text,
    request,
    run_sipp,
    script,
    sipp_args,
)

pytestmark = pytest.mark.sipp
USERS = {"bob": "secret", "alice": "alice-pw"}


@pytest.fixture(scope="module")
def auth_config(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The configuration text, and subscribers added to its auth_db through the CLI."""
    tmp = tmp_path_factory.mktemp("auth")
    text = config_text(tmp, auth=True)
    cfg = tmp / "ksr.toml"
    cfg.write_text(text)
    for user, pw in USERS.items():
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "ksr",
                "subscriber",
                "add",
                f"{user}@127.0.0.1",
                pw,
                "--config",
                str(cfg),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode == 0, res.stderr
    return tmp, text


@pytest.fixture(scope="module", params=LANGS)
def ksr(request: pytest.FixtureRequest, auth_config: tuple[Path, str]) -> Iterator[dict[str, Any]]:
    tmp, text = auth_config
    with ksr_process(script(request.param), text) as k:
        k["tmp"] = tmp
        yield k


def sipp_register(
    k: dict[str, Any], scenario: str, user: str, password: str, port: int | None = None
) -> None:
    res = run_sipp(
        sipp_args(SIPP / scenario, port)
        + [f"127.0.0.1:{k['port']}", "-s", user, "-au", user, "-ap", password]
    )
    assert res.returncode == 0, (
        res.stdout[-1500:] + res.stderr[-1500:] + k["log"].read_text()[-2000:]
    )


def test_register_without_credentials_is_challenged(ksr: dict[str, Any]) -> None:
    peer = Peer()
    me = f"127.0.0.1:{ksr['port']}"
    rpl = peer.final(
        request("REGISTER", f"sip:{me}", peer, "reg-noauth", from_uri=f"sip:bob@{me}").replace(
            f"To: <sip:{me}>", f"To: <sip:bob@{me}>"
        ),
        ksr["port"],
    )
    peer.close()
    assert rpl.status == 401
    challenge = rpl.get("www-authenticate") or ""
    assert challenge.startswith("Digest ")
    assert 'realm="127.0.0.1"' in challenge


def test_register_with_credentials(ksr: dict[str, Any]) -> None:
    sipp_register(ksr, "register_auth.xml", "bob", "secret")  # 401, then 200


def test_register_with_a_wrong_password(ksr: dict[str, Any]) -> None:
    sipp_register(ksr, "register_badauth.xml", "bob", "not-the-password")  # 401, then 401 again


def test_invite_from_local_user_without_credentials_is_407(ksr: dict[str, Any]) -> None:
    me = f"127.0.0.1:{ksr['port']}"
    peer = Peer()
    got = {
        # a local user must authenticate
        "local": peer.final(
            request("INVITE", f"sip:carol@{me}", peer, "inv-local", from_uri=f"sip:bob@{me}"),
            ksr["port"],
        ),
        # someone else's user calling ours: not challenged, routed (nobody is carol)
        "inbound": peer.final(
            request(
                "INVITE", f"sip:carol@{me}", peer, "inv-in", from_uri="sip:alice@elsewhere.invalid"
            ),
            ksr["port"],
        ),
        # someone else's user to someone else's domain: not an open relay
        "relay": peer.final(
            request(
                "INVITE",
                "sip:carol@elsewhere.invalid",
                peer,
                "inv-relay",
                from_uri="sip:alice@elsewhere.invalid",
            ),
            ksr["port"],
        ),
    }
    peer.close()
    assert {k: v.status for k, v in got.items()} == {"local": 407, "inbound": 404, "relay": 403}
    assert 'realm="127.0.0.1"' in (got["local"].get("proxy-authenticate") or "")


def test_authenticated_call(ksr: dict[str, Any]) -> None:
    """bob registers with his password; alice, authenticated, calls him; one CDR."""
    uas_port = free_port()
    sipp_register(ksr, "register_auth.xml", "bob", "secret", uas_port)
    callee = subprocess.Popen(
        sipp_args(DIALOG_SIPP / "uas_answer.xml", uas_port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    call_id = f"e2e-auth-call-{ksr['port']}"
    try:
        time.sleep(0.3)  # let the callee bind before the call reaches it
        caller = run_sipp(
            sipp_args(SIPP / "uac_auth_call.xml")
            + [
                f"127.0.0.1:{ksr['port']}",
                "-s",
                "bob",
                "-key",
                "caller",
                "alice",
                "-au",
                "alice",
                "-ap",
                USERS["alice"],
                "-cid_str",
                call_id,
            ]
        )
        out, _ = callee.communicate(timeout=30)
    finally:
        if callee.poll() is None:
            callee.kill()
            callee.wait()
    log = ksr["log"].read_text()
    assert caller.returncode == 0, caller.stdout[-2000:] + log[-3000:]
    assert callee.returncode == 0, out[-2000:] + log[-3000:]
    (cdr,) = cdrs(ksr["tmp"], call_id)
    assert (cdr["end_reason"], cdr["status"], cdr["caller"], cdr["callee"]) == (
        "caller-bye",
        200,
        "alice",
        "bob",
    )
