"""usrloc through a real server: db modes on every backend, RPC reply shapes (as the Kamailio
captures), expiry with the usrloc:contact-expired event, and a database that goes away."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from ksr.core.rpc import RpcError
from tests.registrar.helpers import exchange, invite, register
from tests.registrar.scripts import script
from tests.support import (
    CAPTURES,
    UdpPeer,
    make_config,
    needs_captures,
    running_server,
    udp_addr,
    write_script,
)


def cfg(url: str, mode: int, **reg: object):  # type: ignore[no-untyped-def]
    return make_config(
        ["sl", "usrloc", "registrar"],
        {"usrloc": {"db_url": url, "db_mode": mode}, "registrar": dict(reg)},
    )


async def _register(server, peer: UdpPeer, user: str = "alice", **kw: object) -> int:  # type: ignore[no-untyped-def]
    rpl = await exchange(peer, udp_addr(server), register(peer.port, user=user, **kw))  # type: ignore[arg-type]
    return rpl.status


@pytest.mark.parametrize("mode", [1, 2, 3])
async def test_bindings_survive_restart(tmp_path: Path, db_url: str, mode: int) -> None:
    suffix, text = script("lua")
    path = write_script(tmp_path, text, suffix)
    async with running_server(cfg(db_url, mode), path) as server:
        peer = await UdpPeer().bind()
        assert await _register(server, peer, "alice") == 200
        assert await _register(server, peer, "bob", call_id="b") == 200
        assert (
            await _register(
                server,
                peer,
                "bob",
                call_id="b",
                cseq=2,
                contacts=[f"<sip:bob@127.0.0.1:{peer.port}>;expires=0"],
            )
            == 200
        )
    async with running_server(
        cfg(db_url, mode), path
    ) as server:  # a new process would see the same
        rpc = server.rpc
        assert rpc.call("ul.lookup", ["location", "alice@127.0.0.1"])["AoR"] == "alice"
        with pytest.raises(RpcError, match="AOR not found"):
            rpc.call("ul.lookup", ["location", "bob@127.0.0.1"])
        rpl = await exchange(peer, udp_addr(server), invite(peer.port, "sip:alice@127.0.0.1"))
        assert rpl.status == 302
    peer.close()


def _shape(v: object) -> object:
    """The structure of an RPC result: keys and value types, not values."""
    if isinstance(v, dict):
        return {k: _shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_shape(v[0])] if v else []
    return type(v).__name__


@needs_captures
async def test_rpc_shapes_match_kamailio(tmp_path: Path) -> None:
    suffix, text = script("lua")
    async with running_server(
        cfg("sqlite://:memory:", 0), write_script(tmp_path, text, suffix)
    ) as server:
        rpc = server.rpc
        empty = json.loads((CAPTURES / "kamcli-02-ul.dump-empty-location.json").read_text())[
            "response_json"
        ]["result"]
        assert rpc.call("ul.dump", []) == empty
        peer = await UdpPeer().bind()
        assert (
            await _register(
                server, peer, "alice", extra=["User-Agent: sipsak 0.9.8.1", "Expires: 300"]
            )
            == 200
        )
        assert await _register(server, peer, "bob", call_id="b") == 200
        dump = rpc.call("ul.dump", [])
        want = json.loads((CAPTURES / "kamcli-06-ul.dump-2-aors.json").read_text())[
            "response_json"
        ]["result"]
        assert _shape(dump) == _shape(want)
        c = dump["Domains"][0]["Domain"]["AoRs"][0]["Info"]["Contacts"][0]["Contact"]
        assert (c["Q"], c["Received"], c["Methods"]) == (-1, "[not set]", 4294967295)
        assert c["Socket"].startswith("udp:127.0.0.1:")
        assert c["Ruid"].startswith("uloc-")
        brief = rpc.call("ul.dump", ["brief"])
        assert brief["Domains"][0]["Domain"]["AoRs"] == [{"AoR": "alice"}, {"AoR": "bob"}]
        assert brief["Domains"][0]["Domain"]["Stats"]["Records"] == 2
        look = rpc.call("ul.lookup", ["location", "alice@127.0.0.1"])
        want = json.loads((CAPTURES / "kamcli-08-ul.lookup-alice.json").read_text())[
            "response_json"
        ]["result"]
        assert _shape(look) == _shape(want)
        assert look["Contacts"][0]["Contact"]["User-Agent"] == "sipsak 0.9.8.1"
        assert 295 <= look["Contacts"][0]["Contact"]["Expires"] <= 300
        with pytest.raises(RpcError, match="^Not enough parameters \\(table and AOR to lookup\\)$"):
            rpc.call("ul.lookup", ["location"])
        with pytest.raises(RpcError, match="^AOR not found in location table$"):
            rpc.call("ul.lookup", ["location", "nobody@127.0.0.1"])
        assert [s for s in server.stats.select("usrloc:")] == [
            ("usrloc", "location_contacts", 2),
            ("usrloc", "location_expires", 0),
            ("usrloc", "location_users", 2),
            ("usrloc", "registered_users", 2),
        ]
        assert server.stats.value("registrar", "accepted_regs") == 2
        rpc.call("ul.add", ["location", "carol", "sip:carol@10.0.0.1", 60, 0.5, "0", 0, 0, 0])
        assert rpc.call("ul.lookup", ["location", "carol"])["Contacts"][0]["Contact"]["Q"] == 500
        with pytest.raises(RpcError, match="Contact not found"):
            rpc.call("ul.rm_contact", ["location", "carol", "sip:nobody@x"])
        rpc.call("ul.rm_contact", ["location", "carol", "sip:carol@10.0.0.1"])
        rpc.call("ul.rm", ["location", "bob"])
        assert [
            a["AoR"] for a in rpc.call("ul.dump", ["brief"])["Domains"][0]["Domain"]["AoRs"]
        ] == ["alice"]
        peer.close()


EXPIRE_LUA = """
function ksr_request_route()
  KSR.registrar.save("location", 0)
end
function on_expired(evname)
  KSR.pv.sets("$shv(expired)", evname .. " " .. KSR.pv.get("$ulc(exp=>aor)") .. " " .. KSR.pv.get("$ulc(exp=>addr)"))
end
"""


async def test_expiry_fires_event(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    config = make_config(
        ["sl", "usrloc", "registrar"],
        {"usrloc": {"timer_interval": 10}, "registrar": {"event_callback": "on_expired"}},
    )
    async with running_server(config, write_script(tmp_path, EXPIRE_LUA)) as server:
        ul = server.module("usrloc")
        peer = await UdpPeer().bind()
        assert await _register(server, peer, "alice", extra=["Expires: 60"]) == 200
        real_now = ul.now()
        ul.now = lambda: real_now + 61
        await trio.sleep(11)  # the mock clock jumps: one timer run
        assert (
            server.shared_vars.get("expired")
            == f"usrloc:contact-expired alice sip:alice@127.0.0.1:{peer.port}"
        )
        assert server.stats.value("usrloc", "location_expires") == 1
        assert ul.domain("location").get("alice") == []
        peer.close()


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.1)


async def test_database_gone_answers_500_then_recovers(tmp_path: Path) -> None:
    """db_mode 3 on a PostgreSQL that is unreachable (a closed port): 500, no crash; when the
    URL points to a live server again, registrations work."""
    suffix, text = script("lua")
    async with running_server(
        cfg("postgres://postgres@127.0.0.1:1/test", 3), write_script(tmp_path, text, suffix)
    ) as server:
        peer = await UdpPeer().bind()
        rpl = await exchange(peer, udp_addr(server), register(peer.port))
        assert rpl.status == 500
        assert rpl.get("P-Registrar-Error") == "usrloc_record_get failed"
        look = await exchange(peer, udp_addr(server), invite(peer.port, "sip:alice@127.0.0.1"))
        assert look.status == 404  # lookup returned -3 and the script answered
        # the same server carries on when the database is back (simulated by a working store)
        ul = server.module("usrloc")
        ul.params.db_url = f"sqlite://{tmp_path}/back.sqlite"
        ul.domains.clear()
        ul.domain("location")
        rpl = await exchange(peer, udp_addr(server), register(peer.port, cseq=2))
        assert rpl.status == 200
        peer.close()
