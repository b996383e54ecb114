"""Digest authentication through a real server: auth_check return codes, challenges, nonce
expiry and replay, and that a wrong password looks exactly like an unknown user."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.db import open_store
from ksr.modules.auth_db.subscribers import Subscribers
from tests.registrar.digest_client import authorization, challenge_params
from tests.registrar.helpers import exchange, invite, register
from tests.registrar.scripts import script
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

# Replies carry auth_check's return code in X-Rc, so each code can be asserted.
RC_LUA = """
function ksr_request_route()
  local rc = KSR.auth_db.auth_check("127.0.0.1", "subscriber", 1)
  KSR.hdr.append_to_reply("X-Rc: " .. rc .. "\\r\\n")
  if rc < 0 then
    KSR.auth.auth_challenge("127.0.0.1", 1)
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(200, "OK")
end
"""


def add_subscriber(
    url: str, user: str = "alice", password: str = "s3cret", domain: str = "127.0.0.1"
) -> None:
    store = open_store(url)
    Subscribers(store).add(user, domain, password)
    store.close()


def config(url: str, **auth: object):  # type: ignore[no-untyped-def]
    return make_config(
        ["sl", "usrloc", "registrar", "auth", "auth_db"],
        {"auth_db": {"db_url": url}, "usrloc": {"db_url": url}, "auth": auth},
    )


async def test_auth_check_return_codes(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/k.sqlite"
    add_subscriber(url)
    async with running_server(
        config(url, nonce_expire=30), write_script(tmp_path, RC_LUA)
    ) as server:
        auth = server.module("auth")
        peer = await UdpPeer().bind()
        addr = udp_addr(server)
        p = peer.port

        first = await exchange(peer, addr, register(p, call_id="a1"))
        assert (first.status, first.get("X-Rc")) == (401, "-5")
        ch = challenge_params(first)
        assert (ch["realm"], ch["qop"], ch["algorithm"]) == ("127.0.0.1", "auth", "MD5")

        ok = await exchange(
            peer,
            addr,
            register(p, call_id="a1", cseq=2, extra=[authorization(first, "alice", "s3cret")]),
        )
        assert (ok.status, ok.get("X-Rc")) == (200, "1")

        # the same nonce-count again is a replay; a higher one is fine
        again = await exchange(
            peer,
            addr,
            register(p, call_id="a1", cseq=3, extra=[authorization(first, "alice", "s3cret")]),
        )
        assert again.get("X-Rc") == "-6"
        nc2 = await exchange(
            peer,
            addr,
            register(
                p, call_id="a1", cseq=4, extra=[authorization(first, "alice", "s3cret", nc=2)]
            ),
        )
        assert nc2.get("X-Rc") == "1"

        bad = await exchange(
            peer,
            addr,
            register(p, call_id="a2", extra=[authorization(first, "alice", "wrong", nc=3)]),
        )
        unknown = await exchange(
            peer,
            addr,
            register(
                p, user="mallory", call_id="a3", extra=[authorization(first, "mallory", "x", nc=4)]
            ),
        )
        assert (bad.get("X-Rc"), unknown.get("X-Rc")) == ("-2", "-3")
        # same status, reason and header names: the reply does not tell whether the user exists
        assert (bad.status, bad.reason) == (unknown.status, unknown.reason) == (401, "Unauthorized")
        assert [h.name for h in bad.headers if h.key not in ("x-rc",)] == [
            h.name for h in unknown.headers if h.key not in ("x-rc",)
        ]

        mismatch = await exchange(
            peer,
            addr,
            register(
                p, user="bob", call_id="a4", extra=[authorization(first, "alice", "s3cret", nc=5)]
            ),
        )
        assert mismatch.get("X-Rc") == "-8"

        auth.now = lambda: 10**10  # the nonce is long expired now: stale, and the challenge says so
        stale = await exchange(
            peer,
            addr,
            register(p, call_id="a5", extra=[authorization(first, "alice", "s3cret", nc=6)]),
        )
        assert stale.get("X-Rc") == "-4"
        assert challenge_params(stale).get("stale") == "true"

        garbage = await exchange(
            peer,
            addr,
            register(p, call_id="a6", extra=['Authorization: Digest realm="127.0.0.1", username=']),
        )
        assert garbage.status == 400
        peer.close()


async def test_sha256_and_proxy_auth(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/k.sqlite"
    add_subscriber(url)
    async with running_server(
        config(url, algorithm="SHA-256"), write_script(tmp_path, RC_LUA)
    ) as server:
        peer = await UdpPeer().bind()
        addr = udp_addr(server)
        first = await exchange(peer, addr, invite(peer.port, "sip:bob@127.0.0.1", call_id="p1"))
        assert first.status == 407
        assert challenge_params(first)["algorithm"] == "SHA-256"
        # From user is "bob" in invite(): authenticate as bob would mismatch, so add bob
        add_subscriber(url, "bob", "pw")
        cred = authorization(
            first,
            "bob",
            "pw",
            method="INVITE",
            uri="sip:bob@127.0.0.1",
            header="Proxy-Authorization",
        )
        ok = await exchange(
            peer, addr, invite(peer.port, "sip:bob@127.0.0.1", call_id="p1", extra=[cred])
        )
        assert (ok.status, ok.get("X-Rc")) == (200, "1")
        peer.close()


@pytest.mark.parametrize("lang", ["lua", "py"])
async def test_register_with_auth_then_lookup(tmp_path: Path, db_url: str, lang: str) -> None:
    add_subscriber(db_url)
    suffix, text = script(lang, auth=True)
    async with running_server(config(db_url), write_script(tmp_path, text, suffix)) as server:
        peer = await UdpPeer().bind()
        addr = udp_addr(server)
        first = await exchange(peer, addr, register(peer.port))
        assert first.status == 401
        ok = await exchange(
            peer, addr, register(peer.port, cseq=2, extra=[authorization(first, "alice", "s3cret")])
        )
        assert ok.status == 200
        found = await exchange(peer, addr, invite(peer.port, "sip:alice@127.0.0.1"))
        assert found.status == 302
        assert f"sip:alice@127.0.0.1:{peer.port}" in (found.get("contact") or "")
        peer.close()
