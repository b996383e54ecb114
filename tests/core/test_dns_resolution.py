"""Next hops with host names: resolved by DNS (RFC 3263: SRV, then A) without blocking the
event loop, against a DNS server run by the test on 127.0.0.1."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import trio

from ksr.core.resolver import srv_order
from ksr.sip.builders import make_reply
from ksr.sip.message import Request, parse_message_untrusted
from tests.dns_responder import DnsResponder, dns_responder
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

SCRIPT = """
function ksr_request_route()
  if KSR.is_OPTIONS() then
    KSR.sl.sl_send_reply(200, "Here")
    return 1
  end
  if KSR.pv.get("$rU") == "stateless" then
    KSR.forward()
    return 1
  end
  KSR.tm.t_on_failure("failed")
  local rc = KSR.tm.t_relay()
  KSR.pv.sets("$var(relay_rc)", tostring(rc))
  if rc < 0 then KSR.sl.sl_reply_error() end
end

function failed()
  KSR.pv.sets("$var(failed)", "yes " .. KSR.pv.get("$T_reply_code"))
end
"""

MODS = ["sl", "tm", "tmx", "corex"]


def _req(data: bytes) -> Request:
    msg = parse_message_untrusted(data)
    assert isinstance(msg, Request), msg
    return msg


async def _answer(peer: UdpPeer, code: int = 200) -> Request:
    """Receive the relayed request at ``peer`` and answer it through the Via it came with."""
    req = _req(await peer.recv())
    via = req.top_via
    rpl = make_reply(req, code, "OK", to_tag="callee")
    await peer.send(rpl.to_bytes(), (via.host, via.port or 5060))
    return req


def _config(dns: DnsResponder, **core: object) -> object:
    return make_config(MODS, dns_servers=[dns.server_spec], **core)


async def test_a_record_reaches_the_peer(tmp_path: Path) -> None:
    """A host name with a port: A record only (RFC 3263 §4.2), no SRV asked."""
    callee, caller = await UdpPeer().bind(), await UdpPeer().bind()
    records = {("example.test", "A"): ["127.0.0.1"]}
    async with (
        dns_responder(records) as dns,
        running_server(_config(dns), write_script(tmp_path, SCRIPT)) as server,  # type: ignore[arg-type]
    ):
        ruri = f"sip:bob@example.test:{callee.port}"
        await caller.send(sip_request("MESSAGE", ruri, caller.port), udp_addr(server))
        req = await _answer(callee)
        assert req.uri == ruri
        assert (await caller.recv_reply()).status == 200
        assert server.script_vars.get("relay_rc") == "1"
        assert dns.asked == [("example.test", "A")]
        # the answer is cached for its TTL: the next request asks nobody
        await caller.send(
            sip_request("MESSAGE", ruri, caller.port, "z9hG4bK-2", "call-2"), udp_addr(server)
        )
        await _answer(callee)
        assert (await caller.recv_reply()).status == 200
        assert dns.asked == [("example.test", "A")]
    callee.close()
    caller.close()


async def test_srv_record_gives_target_and_port(tmp_path: Path) -> None:
    """No port: _sip._udp SRV, lowest priority first, its target's A record and SRV port."""
    first, second, caller = await UdpPeer().bind(), await UdpPeer().bind(), await UdpPeer().bind()
    records = {
        ("_sip._udp.example.test", "SRV"): [
            f"20 10 {second.port} backup.example.test.",
            f"10 10 {first.port} sip1.example.test.",
        ],
        ("sip1.example.test", "A"): ["127.0.0.1"],
        ("backup.example.test", "A"): ["127.0.0.1"],
    }
    async with (
        dns_responder(records) as dns,
        running_server(_config(dns), write_script(tmp_path, SCRIPT)) as server,  # type: ignore[arg-type]
    ):
        await caller.send(
            sip_request("MESSAGE", "sip:bob@example.test", caller.port), udp_addr(server)
        )
        req = await _answer(first)
        assert req.uri == "sip:bob@example.test"
        assert (await caller.recv_reply()).status == 200
        assert ("_sip._udp.example.test", "SRV") in dns.asked
    for p in (first, second, caller):
        p.close()


async def test_stateless_forward_waits_for_dns(tmp_path: Path) -> None:
    callee, caller = await UdpPeer().bind(), await UdpPeer().bind()
    records = {
        ("_sip._udp.example.test", "SRV"): [f"10 10 {callee.port} sip1.example.test."],
        ("sip1.example.test", "A"): ["127.0.0.1"],
    }
    async with (
        dns_responder(records) as dns,
        running_server(_config(dns), write_script(tmp_path, SCRIPT)) as server,  # type: ignore[arg-type]
    ):
        ruri = "sip:stateless@example.test"
        await caller.send(sip_request("MESSAGE", ruri, caller.port), udp_addr(server))
        req = _req(await callee.recv())
        assert req.uri == ruri
        assert len(req.vias) == 2  # ours on top of the caller's
    callee.close()
    caller.close()


async def test_unresolvable_name_gives_478_after_the_failure_route(tmp_path: Path) -> None:
    caller = await UdpPeer().bind()
    async with (
        dns_responder({}) as dns,
        running_server(_config(dns), write_script(tmp_path, SCRIPT)) as server,  # type: ignore[arg-type]
    ):
        inv = sip_request("INVITE", "sip:bob@nowhere.test", caller.port)
        await caller.send(inv, udp_addr(server))
        codes = []
        while not codes or codes[-1] < 200:
            codes.append((await caller.recv_reply()).status)
            rpl = codes[-1]
        assert codes == [100, 478]
        assert rpl == 478
        assert server.script_vars.get("relay_rc") == "1"  # the transaction exists: 1 at once
        assert server.script_vars.get("failed") == "yes 478"
        assert ("nowhere.test", "A") in dns.asked
    caller.close()


async def test_unresolvable_reason_phrase(tmp_path: Path) -> None:
    caller = await UdpPeer().bind()
    async with (
        dns_responder({}) as dns,
        running_server(_config(dns), write_script(tmp_path, SCRIPT)) as server,  # type: ignore[arg-type]
    ):
        await caller.send(
            sip_request("MESSAGE", "sip:bob@nowhere.test", caller.port), udp_addr(server)
        )
        rpl = await caller.recv_reply()
        assert (rpl.status, rpl.reason) == (478, "Unresolvable destination")
    caller.close()


async def test_a_slow_dns_answer_blocks_nobody(tmp_path: Path) -> None:
    """While the name of one request's next hop is being resolved, other requests are served:
    the OPTIONS sent after the MESSAGE is answered before the MESSAGE is relayed."""
    callee, caller = await UdpPeer().bind(), await UdpPeer().bind()
    records = {("slow.test", "A"): ["127.0.0.1"]}
    async with (
        dns_responder(records) as dns,
        running_server(_config(dns), write_script(tmp_path, SCRIPT)) as server,  # type: ignore[arg-type]
    ):
        dns.slow.add("slow.test")
        ruri = f"sip:bob@slow.test:{callee.port}"
        await caller.send(sip_request("MESSAGE", ruri, caller.port), udp_addr(server))
        await dns.slow_asked.wait()  # ksr asked, the answer is held back
        assert server.script_vars.get("relay_rc") == "1"  # t_relay already returned
        await caller.send(
            sip_request("OPTIONS", "sip:127.0.0.1", caller.port, "z9hG4bK-o", "opt"),
            udp_addr(server),
        )
        first = await caller.recv_reply()
        assert (first.status, first.get("call-id")) == (200, "opt")
        dns.release.set()
        req = await _answer(callee)
        assert req.uri == ruri
        final = await caller.recv_reply()
        assert (final.status, final.get("call-id")) == (200, "test-call-1")
    callee.close()
    caller.close()


async def test_dns_timeout_makes_the_branch_fail(tmp_path: Path) -> None:
    """An answer that never comes: after dns_timeout the branch fails with 478."""
    caller = await UdpPeer().bind()
    async with (
        dns_responder({("slow.test", "A"): ["127.0.0.1"]}) as dns,
        running_server(
            _config(dns, dns_timeout=0.2),  # type: ignore[arg-type]
            write_script(tmp_path, SCRIPT),
        ) as server,
    ):
        dns.slow.add("slow.test")
        await caller.send(
            sip_request("MESSAGE", "sip:bob@slow.test:5999", caller.port), udp_addr(server)
        )
        rpl = await caller.recv_reply(timeout=10)
        assert rpl.status == 478
        assert server.script_vars.get("failed") == "yes 478"
    caller.close()


async def test_cancel_while_resolving_ends_with_487(tmp_path: Path) -> None:
    caller = await UdpPeer().bind()
    async with (
        dns_responder({("slow.test", "A"): ["127.0.0.1"]}) as dns,
        running_server(_config(dns), write_script(tmp_path, SCRIPT + CANCEL)) as server,  # type: ignore[arg-type]
    ):
        dns.slow.add("slow.test")
        inv = sip_request("INVITE", "sip:bob@slow.test:5999", caller.port)
        await caller.send(inv, udp_addr(server))
        assert (await caller.recv_reply()).status == 100
        await dns.slow_asked.wait()
        await caller.send(
            sip_request("CANCEL", "sip:bob@slow.test:5999", caller.port), udp_addr(server)
        )
        got = {(await caller.recv_reply()).status for _ in range(2)}
        assert got == {200, 487}  # the CANCEL's 200 and the INVITE's 487
    caller.close()


CANCEL = """
local relay = ksr_request_route
function ksr_request_route()
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  relay()
end
"""


def test_srv_order_priority_then_weight() -> None:
    def rec(prio: int, weight: int, name: str) -> SimpleNamespace:
        return SimpleNamespace(priority=prio, weight=weight, name=name)

    records = [rec(20, 0, "d"), rec(10, 1, "b"), rec(10, 9, "a"), rec(5, 0, "c")]
    plain = [r.name for r in srv_order(records, False, random.Random(1))]
    assert plain == ["c", "a", "b", "d"]
    # weighted random within a priority: both orders happen, priorities never mix
    seen = set()
    for seed in range(50):
        order = [r.name for r in srv_order(records, True, random.Random(seed))]
        assert order[0] == "c"
        assert order[3] == "d"
        seen.add(tuple(order[1:3]))
    assert seen == {("a", "b"), ("b", "a")}


async def test_responder_is_real() -> None:
    """The test's DNS server answers real DNS queries (the other tests depend on it)."""
    import dns.asyncresolver
    import dns.nameserver

    async with dns_responder({("x.test", "A"): ["127.0.0.9"]}) as dns_srv:
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", dns_srv.port)]
        with trio.fail_after(5):
            ans = await r.resolve("x.test", "A")
        assert [a.address for a in ans] == ["127.0.0.9"]


async def test_naptr_when_dns_try_naptr(tmp_path: Path) -> None:
    """dns_try_naptr: the NAPTR replacement names the SRV set (not the _sip._udp default)."""
    callee, caller = await UdpPeer().bind(), await UdpPeer().bind()
    records = {
        ("example.test", "NAPTR"): ['10 50 "s" "SIP+D2U" "" _sip._udp.proxies.example.test.'],
        ("_sip._udp.proxies.example.test", "SRV"): [f"10 10 {callee.port} p1.example.test."],
        ("p1.example.test", "A"): ["127.0.0.1"],
    }
    async with (
        dns_responder(records) as dns,
        running_server(
            _config(dns, dns_try_naptr=True),  # type: ignore[arg-type]
            write_script(tmp_path, SCRIPT),
        ) as server,
    ):
        await caller.send(
            sip_request("MESSAGE", "sip:bob@example.test", caller.port), udp_addr(server)
        )
        await _answer(callee)
        assert (await caller.recv_reply()).status == 200
        assert dns.asked[0] == ("example.test", "NAPTR")
    callee.close()
    caller.close()
