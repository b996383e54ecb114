"""RFC 4475 torture messages through the default scripts (Lua and Python), on real UDP.

Each of the 49 messages and test.dat must get what RFC 3261 asks of a proxy/registrar: 505,
416, 420 or 400 (with a reason) for the malformed ones, 483 for Max-Forwards 0, nothing for
stray responses, never a send to a broadcast Via. The valid requests are all for example.*
domains, which are not ours: the default script relays them (sipout, or loose_route for the
in-dialog one) and, since those names do not resolve, sl_reply_error() answers 478.

The server runs in-process so that every send it makes is seen, and name resolution is pinned
to "IP literals only" (a name fails at once, without DNS): the outcome must not depend on
whether example.com resolves where the tests run.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from ksr.core.context import Destination
from ksr.core.resolver import Resolver
from ksr.sip.message import Response, parse_message_untrusted
from tests.support import (
    RFC4475,
    UdpPeer,
    make_config,
    needs_rfc4475,
    running_server,
    sip_request,
    udp_addr,
)
from tests.test_rfc4475 import EXPECTED as SMALL_SCRIPT
from tests.test_rfc4475 import PARSER_REJECTS, REASONS

from .helpers import LANGS, script

pytestmark = needs_rfc4475

RELAY = "valid, for a domain that is not ours: relayed, the host does not resolve -> 478"

# file -> (final answer or None for none, why): the valid requests, decided here
VALID: dict[str, tuple[int | None, str]] = {
    "wsinv.dat": (
        478,
        "valid re-INVITE (To-tag) with a Route: loose_route relays it, unresolvable",
    ),
    "intmeth.dat": (478, RELAY),
    "esc01.dat": (478, RELAY),
    "escnull.dat": (478, "valid REGISTER for example.com: not our domain, relayed (sipout), 478"),
    "esc02.dat": (478, "RE%47IST%45R is an unknown method, not REGISTER; " + RELAY),
    "lwsdisp.dat": (478, "valid OPTIONS with a R-URI user: routed, not a keepalive; " + RELAY),
    "longreq.dat": (478, RELAY),
    "dblreq.dat": (478, "REGISTER for example.com, relayed; the INVITE after it is ignored"),
    "semiuri.dat": (478, RELAY),
    "transports.dat": (478, RELAY),
    "mpart01.dat": (478, RELAY),
    "badbranch.dat": (478, "branch is just the magic cookie, syntactically fine; " + RELAY),
    "invut.dat": (478, "unknown body type is the UAS's business (415); " + RELAY),
    "regaut01.dat": (478, "REGISTER for example.com (not ours): relayed, not challenged; 478"),
    "cparam01.dat": (478, "REGISTER for example.com, relayed; 478"),
    "cparam02.dat": (478, "REGISTER for example.com, relayed; 478"),
    "regescrt.dat": (478, "REGISTER for example.com, relayed; 478"),
    "sdp01.dat": (478, "406 is the UAS's business; " + RELAY),
    "inv2543.dat": (478, "RFC 2543 INVITE (no branch, no Max-Forwards): " + RELAY),
}

# the malformed ones (400/416/420/483/505) and the stray responses (None): the default script
# answers them exactly as the small request-init script of tests/test_rfc4475.py does
EXPECTED: dict[str, tuple[int | None, str]] = {
    **{name: want for name, want in SMALL_SCRIPT.items() if name not in VALID},
    **VALID,
}


_real_now_all = Resolver.now_all  # Resolver.now answers from it too


def _only_ip_literals(self: Resolver, uri: str) -> list[Destination] | str:
    found = _real_now_all(self, uri)
    if isinstance(found, list) and found:
        ipaddress.ip_address(found[0].host)  # an answer without DNS is an IP literal
        return found
    return []


async def _corpus(tmp: Path, lang: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """file -> {'arrived': [(code, reason)], 'sent': [(host, code, reason)]}"""
    monkeypatch.setattr(Resolver, "now_all", _only_ip_literals)
    db = f"sqlite://{tmp}/ksr.sqlite"
    cfg = make_config(
        modparam={
            "usrloc": {"db_url": db},
            "auth_db": {"db_url": db},
            "acc": {"db_url": f"jsonl://{tmp}/cdrs.jsonl"},
        }
    )
    out: dict[str, Any] = {}
    async with running_server(cfg, script(lang)) as server:
        # the server asks the resolver's compiled half directly: it answers from the patch too
        resolver = server.resolver
        monkeypatch.setattr(server, "resolve_now_all", lambda uri: _only_ip_literals(resolver, uri))
        monkeypatch.setattr(server, "resolve_now", lambda uri: resolver.now(uri))
        sent: list[tuple[str, int, bytes]] = []
        real_send = server.send

        def recording_send(dest: Any, data: bytes, sock: Any = None, conn_id: int = 0) -> bool:
            sent.append((dest.host, dest.port, data))
            return real_send(dest, data, sock, conn_id)

        monkeypatch.setattr(server, "send", recording_send)
        addr = udp_addr(server)
        keepalive = f"sip:127.0.0.1:{addr[1]}"
        peer = await UdpPeer().bind()
        for i, name in enumerate(sorted(EXPECTED)):
            sent.clear()
            await peer.send((RFC4475 / name).read_bytes(), addr)
            # a keepalive after each file: once it is answered, the file has been handled
            probe = f"probe-{i}"
            await peer.send(
                sip_request("OPTIONS", keepalive, peer.port, f"z9hG4bK-{probe}", probe), addr
            )
            arrived = []
            while True:
                rpl = parse_message_untrusted(await peer.recv())
                assert isinstance(rpl, Response)
                if rpl.get("call-id") == probe:
                    assert (rpl.status, rpl.reason) == (200, "Keepalive"), name
                    break
                arrived.append((rpl.status, rpl.reason))
            sends = []
            for host, _port, data in sent:
                if probe.encode() in data:
                    continue
                msg = parse_message_untrusted(data)
                assert isinstance(msg, Response), f"{name}: ksr sent a request ({RELAY})"
                sends.append((host, msg.status, msg.reason))
            out[name] = {"arrived": arrived, "sent": sends}
        await peer.send(
            sip_request("OPTIONS", keepalive, peer.port, "z9hG4bK-final", "final"), addr
        )
        assert (await peer.recv_reply()).status == 200
        peer.close()
    return out


def _check(name: str, got: dict[str, Any]) -> None:
    status, why = EXPECTED[name]
    finals = [(host, code, reason) for host, code, reason in got["sent"] if code >= 200]
    assert all(host != "255.255.255.255" for host, _, _ in got["sent"]), name
    assert all(code == 100 for _, code, _ in got["sent"] if code < 200), name
    assert [code for _, code, _ in finals] == ([] if status is None else [status]), (name, why, got)
    if status is not None and name not in PARSER_REJECTS:
        # force_rport: the script's answer really comes back to the sender
        assert [c for c, _ in got["arrived"] if c >= 200] == [status], (name, got)
    if name in REASONS:
        assert REASONS[name] in finals[0][2], (name, finals)
    if status == 478:
        assert finals[0][2] == "Unresolvable destination (478/SL)"


def test_table_covers_the_corpus() -> None:
    assert set(EXPECTED) == {p.name for p in RFC4475.glob("*.dat")}
    assert len(EXPECTED) == 50
    # what comes from the small-script table is only errors and silence
    inherited = [EXPECTED[n][0] for n in EXPECTED if n not in VALID]
    assert all(code is None or code >= 400 for code in inherited)


async def test_corpus_through_default_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = {}
    for lang in LANGS:
        (tmp_path / lang).mkdir()
        results[lang] = await _corpus(tmp_path / lang, lang, monkeypatch)
    lua, py = (results[x] for x in LANGS)
    for name in sorted(EXPECTED):
        _check(name, lua[name])
    assert lua == py  # the same answers, code and reason, in both languages
