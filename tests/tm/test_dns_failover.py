"""DNS failover (core ``use_dns_failover``): a branch that fails at the transport level (no
reply before Timer B/F, a 503) is sent again to the next destination its next hop resolved to,
against a DNS server run by the test on 127.0.0.1. Timers run on trio's MockClock."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from ksr.core.config import Config
from ksr.core.hosts import HostTable
from ksr.core.resolver import Resolver
from ksr.sip.builders import make_reply
from ksr.sip.message import Request, parse_message_untrusted
from tests.dns_responder import DnsResponder, dns_responder
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

MODS = ["sl", "tm", "tmx", "corex"]

SCRIPT = """
function ksr_request_route()
  KSR.tm.t_set_fr(0, 2000)
  KSR.tm.t_on_failure("failed")
  if KSR.pv.get("$rU") == "nofailover" then
    KSR.tm.t_relay_to_flags(4)
  elseif KSR.pv.get("$rU") == "disabled" then
    KSR.tm.t_set_disable_failover(1)
    KSR.tm.t_relay()
  else
    KSR.tm.t_relay()
  end
end

function failed()
  KSR.pv.sets("$var(failed)", "yes " .. KSR.pv.get("$T_reply_code"))
end
"""


def _req(data: bytes) -> Request:
    msg = parse_message_untrusted(data)
    assert isinstance(msg, Request), msg
    return msg


async def _answer(peer: UdpPeer, code: int = 200) -> Request:
    """Receive the relayed request at ``peer`` and answer it through the Via it came with."""
    req = _req(await peer.recv(timeout=30))
    via = req.top_via
    rpl = make_reply(req, code, "OK" if code == 200 else "Unavailable", to_tag="callee")
    await peer.send(rpl.to_bytes(), (via.host, via.port or 5060))
    return req


def _config(dns: DnsResponder, failover: bool = True, **tm: object) -> Config:
    return make_config(
        MODS,
        modparam={"tm": tm} if tm else None,
        dns_servers=[dns.server_spec],
        use_dns_failover=failover,
    )


def _srv(first: UdpPeer, second: UdpPeer) -> dict[tuple[str, str], list[str]]:
    return {
        ("_sip._udp.example.test", "SRV"): [
            f"20 10 {second.port} backup.example.test.",
            f"10 10 {first.port} sip1.example.test.",
        ],
        ("sip1.example.test", "A"): ["127.0.0.1"],
        ("backup.example.test", "A"): ["127.0.0.1"],
    }


async def _final(caller: UdpPeer) -> int:
    rpl = await caller.recv_reply(timeout=60)
    while rpl.status < 200:
        rpl = await caller.recv_reply(timeout=60)
    return rpl.status


async def test_srv_failover_to_the_second_target(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The first SRV target never answers: after Timer F the request goes to the second one
    (a new Via branch), whose 200 reaches the caller; no failure route ran."""
    first, second, caller = await UdpPeer().bind(), await UdpPeer().bind(), await UdpPeer().bind()
    async with (
        dns_responder(_srv(first, second)) as dns,
        running_server(_config(dns), write_script(tmp_path, SCRIPT)) as server,
    ):
        ruri = "sip:bob@example.test"
        await caller.send(sip_request("MESSAGE", ruri, caller.port), udp_addr(server))
        lost = _req(await first.recv(timeout=30))  # sent, never answered (retransmissions follow)
        got = await _answer(second)
        assert await _final(caller) == 200
        assert got.uri == ruri
        assert got.top_via.branch != lost.top_via.branch
        assert got.get("call-id") == lost.get("call-id")
        assert server.script_vars.get("failed") is None
    for p in (first, second, caller):
        p.close()


async def _no_failover(tmp_path: Path, user: str, failover: bool) -> None:
    first, second, caller = await UdpPeer().bind(), await UdpPeer().bind(), await UdpPeer().bind()
    async with (
        dns_responder(_srv(first, second)) as dns,
        running_server(_config(dns, failover), write_script(tmp_path, SCRIPT)) as server,
    ):
        req = sip_request("MESSAGE", f"sip:{user}@example.test", caller.port)
        await caller.send(req, udp_addr(server))
        await first.recv(timeout=30)
        assert await _final(caller) == 408
        assert server.script_vars.get("failed") == "yes 408"
        assert await second.nothing(timeout=30)
    for p in (first, second, caller):
        p.close()


async def test_failover_off_by_default_param(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    await _no_failover(tmp_path, "bob", failover=False)


async def test_relay_flag_4_disables_failover(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    await _no_failover(tmp_path, "nofailover", failover=True)


async def test_t_set_disable_failover(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    await _no_failover(tmp_path, "disabled", failover=True)


async def test_a_records_fail_over_to_the_next_address(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A host name with a port and two A records: 127.0.0.2 (silent) first, then 127.0.0.1."""
    callee = await UdpPeer().bind()
    silent = UdpPeer()
    await silent.sock.bind(("127.0.0.2", callee.port))
    caller = await UdpPeer().bind()
    records = {("multi.test", "A"): ["127.0.0.2", "127.0.0.1"]}
    async with (
        dns_responder(records) as dns,
        running_server(_config(dns), write_script(tmp_path, SCRIPT)) as server,
    ):
        ruri = f"sip:bob@multi.test:{callee.port}"
        inv = sip_request("INVITE", ruri, caller.port)
        await caller.send(inv, udp_addr(server))
        lost = _req(await silent.recv(timeout=30))
        assert lost.method == "INVITE"
        got = await _answer(callee)
        assert await _final(caller) == 200
        assert got.top_via.branch != lost.top_via.branch
        assert dns.asked == [("multi.test", "A")]
    for p in (callee, silent, caller):
        p.close()


async def test_503_fails_over_unless_failover_on_503_is_off(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    for on_503, expected in ((1, 200), (0, 503)):
        first, second = await UdpPeer().bind(), await UdpPeer().bind()
        caller = await UdpPeer().bind()
        async with (
            dns_responder(_srv(first, second)) as dns,
            running_server(
                _config(dns, failover_on_503=on_503), write_script(tmp_path, SCRIPT)
            ) as server,
        ):
            await caller.send(
                sip_request("MESSAGE", "sip:bob@example.test", caller.port), udp_addr(server)
            )
            await _answer(first, 503)
            if on_503:
                await _answer(second)
            else:
                assert await second.nothing(timeout=30)
            assert await _final(caller) == expected
        for p in (first, second, caller):
            p.close()


async def test_resolver_gives_every_destination_in_order() -> None:
    """lookup_all: the SRV targets by priority, each with all its addresses; lookup: the
    first of them (the single answer other callers use)."""
    records = {
        ("_sip._udp.example.test", "SRV"): [
            "20 10 5070 backup.example.test.",
            "10 10 5060 sip1.example.test.",
        ],
        ("sip1.example.test", "A"): ["127.0.0.3", "127.0.0.4"],
        ("backup.example.test", "A"): ["127.0.0.5"],
    }
    async with dns_responder(records) as dns:
        core = make_config(MODS, dns_servers=[dns.server_spec], dns_hosts_file="").core
        resolver = Resolver(core, HostTable(), {"udp"})
        with trio.fail_after(5):
            found = await resolver.lookup_all("sip:bob@example.test")
        assert [(d.host, d.port) for d in found] == [
            ("127.0.0.3", 5060),
            ("127.0.0.4", 5060),
            ("127.0.0.5", 5070),
        ]
        assert {d.uri for d in found} == {"sip:bob@example.test"}
        first = resolver.now("sip:bob@example.test")  # cached now
        assert first == found[0]
        assert resolver.now_all("sip:bob@example.test") == found
        assert await resolver.lookup("sip:bob@example.test") == found[0]
