"""tm in a running server over real UDP sockets: retransmissions, loops, forking, stray
replies, timeouts and freeing of transactions."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ksr.sip.builders import make_reply
from ksr.sip.message import Request, Response, parse_message_untrusted
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

SCRIPT = """
function ksr_request_route()
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if not KSR.is_ACK() and KSR.tm.t_check_trans() == 0 then return 1 end
  if KSR.is_ACK() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  local user = KSR.pv.get("$rU")
  if user == "loop" then
    KSR.setdsturi("sip:127.0.0.1:" .. KSR.pv.get("$Rp"))
  elseif user == "fork" then
    KSR.setdsturi("sip:127.0.0.1:%(a)d")
    KSR.corex.append_branch_uri("sip:fork@127.0.0.1:%(b)d")
  elseif user == "local" then
    KSR.tm.t_newtran()
    KSR.sl.send_reply(404, "Nobody")
    return 1
  elseif user == "keep" then
    KSR.tm.t_newtran()
    return 1
  else
    KSR.setdsturi("sip:127.0.0.1:%(a)d")
  end
  KSR.tm.t_on_failure("failed")
  if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
end

function failed()
  KSR.pv.sets("$var(failed)", "yes " .. KSR.pv.get("$T_reply_code"))
end
"""

MODS = ["sl", "tm", "tmx", "rr", "corex"]


async def _setup(tmp_path: Path, **tm: int) -> tuple[UdpPeer, UdpPeer, UdpPeer, Path]:
    a, b, caller = await UdpPeer().bind(), await UdpPeer().bind(), await UdpPeer().bind()
    script = write_script(tmp_path, SCRIPT % {"a": a.port, "b": b.port})
    return a, b, caller, script


def _req(data: bytes) -> Request:
    msg = parse_message_untrusted(data)
    assert isinstance(msg, Request), msg
    return msg


async def _answer(peer: UdpPeer, req: Request, code: int, to_tag: str = "callee") -> None:
    rpl = make_reply(req, code, to_tag=to_tag)
    via = req.top_via
    await peer.send(rpl.to_bytes(), (via.params.get("received") or via.host, via.port or 5060))


async def test_retransmitted_invite_is_absorbed(tmp_path: Path) -> None:
    a, b, caller, script = await _setup(tmp_path)
    async with running_server(make_config(MODS), script) as server:
        inv = sip_request("INVITE", ruri="sip:bob@127.0.0.1", port=caller.port)
        await caller.send(inv, udp_addr(server))
        assert (await caller.recv_reply()).status == 100
        fwd = _req(await a.recv())
        await caller.send(inv, udp_addr(server))  # retransmission
        assert (await caller.recv_reply()).status == 100  # the last reply again
        assert await a.nothing(0.2)  # not relayed twice
        await _answer(a, fwd, 180)
        assert (await caller.recv_reply()).status == 180
        await caller.send(inv, udp_addr(server))
        assert (await caller.recv_reply()).status == 180
        await _answer(a, fwd, 486)
        assert (await caller.recv_reply()).status == 486
        ack = _req(await a.recv())  # hop-by-hop ACK from ksr
        assert ack.method == "ACK"
        assert ack.top_via.branch == fwd.top_via.branch
        assert server.stats.value("tmx", "4xx_transactions") == 1


async def test_loop_is_detected(tmp_path: Path) -> None:
    a, b, caller, script = await _setup(tmp_path)
    async with running_server(make_config(MODS), script) as server:
        await caller.send(
            sip_request("OPTIONS", ruri="sip:loop@127.0.0.1", port=caller.port), udp_addr(server)
        )
        rpl = await caller.recv_reply()
        assert rpl.status == 482


async def test_parallel_fork_2xx_cancels_the_other_branch(tmp_path: Path) -> None:
    a, b, caller, script = await _setup(tmp_path)
    async with running_server(make_config(MODS), script) as server:
        await caller.send(
            sip_request("INVITE", ruri="sip:fork@127.0.0.1", port=caller.port), udp_addr(server)
        )
        assert (await caller.recv_reply()).status == 100
        ra, rb = _req(await a.recv()), _req(await b.recv())
        assert ra.top_via.branch != rb.top_via.branch
        await _answer(a, ra, 180, "a")
        assert (await caller.recv_reply()).status == 180
        await _answer(b, rb, 200, "b")
        ok = await caller.recv_reply()
        assert ok.status == 200
        assert ok.to_tag == "b"
        cancel = _req(await a.recv())
        assert cancel.method == "CANCEL"
        assert cancel.top_via.branch == ra.top_via.branch
        await _answer(a, cancel, 200, "a")
        await _answer(a, ra, 487, "a")
        ack = _req(await a.recv())
        assert ack.method == "ACK"
        assert await caller.nothing(0.2)  # the 487 is not relayed after the 200


async def test_parallel_fork_picks_the_best_failure(tmp_path: Path) -> None:
    a, b, caller, script = await _setup(tmp_path)
    async with running_server(make_config(MODS), script) as server:
        await caller.send(
            sip_request("INVITE", ruri="sip:fork@127.0.0.1", port=caller.port), udp_addr(server)
        )
        assert (await caller.recv_reply()).status == 100
        ra, rb = _req(await a.recv()), _req(await b.recv())
        await _answer(a, ra, 503, "a")
        assert await caller.nothing(0.1)  # waits for the other branch
        await _answer(b, rb, 404, "b")
        final = await caller.recv_reply()
        assert final.status == 404  # 4xx beats 5xx (RFC 3261 §16.7)
        assert server.script_vars.get("failed") == "yes 404"


async def test_stray_reply_is_forwarded_statelessly(tmp_path: Path) -> None:
    a, b, caller, script = await _setup(tmp_path)
    async with running_server(make_config(MODS), script) as server:
        host, port = udp_addr(server)
        stray = (
            "SIP/2.0 200 OK\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bKunknown\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{caller.port};branch=z9hG4bKcaller\r\n"
            "From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        await a.send(stray, (host, port))
        got = parse_message_untrusted(await caller.recv())
        assert isinstance(got, Response)
        assert got.status == 200
        assert len(got.vias) == 1


async def test_stateful_local_reply_and_retransmission(tmp_path: Path) -> None:
    a, b, caller, script = await _setup(tmp_path)
    async with running_server(make_config(MODS), script) as server:
        req = sip_request("MESSAGE", ruri="sip:local@127.0.0.1", port=caller.port)
        await caller.send(req, udp_addr(server))
        first = await caller.recv_reply()
        await caller.send(req, udp_addr(server))
        again = await caller.recv_reply()
        assert (first.status, first.reason) == (404, "Nobody")
        assert again.to_tag == first.to_tag
        assert server.stats.value("tmx", "UAS_transactions") == 1


async def test_dead_callee_408_and_transactions_freed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, caller, script = await _setup(tmp_path)
    cfg = make_config(MODS, modparam={"tm": {"fr_timer": 2000, "wt_timer": 1000}})
    async with running_server(cfg, script) as server:
        for i in range(5):
            await caller.send(
                sip_request(
                    "INVITE",
                    ruri="sip:bob@127.0.0.1",
                    port=caller.port,
                    branch=f"z9hG4bK-dead-{i}",
                    call_id=f"dead-{i}",
                ),
                udp_addr(server),
            )
            assert (await caller.recv_reply()).status == 100
        finals = []
        for _ in range(5):
            rpl = await caller.recv_reply(timeout=10)
            while rpl.status < 200:
                rpl = await caller.recv_reply(timeout=10)
            finals.append(rpl.status)
        assert finals == [408] * 5
        assert server.script_vars.get("failed") == "yes 408"
        tm = server.module("tm")
        assert len(tm.engine.by_key) == 5  # waiting for the caller's ACKs
        await trio.sleep(60)  # Timer H / wait timers expire
        assert not tm.engine.by_key
        assert not tm.engine.by_branch
        assert not tm.engine.by_e2e
        assert server.stats.value("tmx", "inuse_transactions") == 0


@pytest.mark.parametrize("provisionals", [1, 2])
async def test_timer_c_runs_from_the_last_provisional(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, provisionals: int
) -> None:
    """RFC 3261 §16.7 step 2 (restart_fr_on_each_reply): Timer C (fr_inv_timer, 3 s here) runs
    from the last provisional reply; when it fires the caller gets 408 and the branch a CANCEL."""
    a, b, caller, script = await _setup(tmp_path)
    cfg = make_config(MODS, modparam={"tm": {"fr_inv_timer": 3000}})
    async with running_server(cfg, script) as server:
        await caller.send(
            sip_request("INVITE", ruri="sip:bob@127.0.0.1", port=caller.port), udp_addr(server)
        )
        assert (await caller.recv_reply()).status == 100
        fwd = _req(await a.recv())
        t0 = trio.current_time()
        await _answer(a, fwd, 180)
        assert (await caller.recv_reply()).status == 180
        if provisionals == 2:
            await trio.sleep(2)
            await _answer(a, fwd, 183)
            assert (await caller.recv_reply()).status == 183
        assert (await caller.recv_reply(timeout=10)).status == 408
        assert trio.current_time() - t0 == pytest.approx(
            3.0 if provisionals == 1 else 5.0, abs=0.07
        )
        assert _req(await a.recv()).method == "CANCEL"


async def test_unresolvable_next_hop_answers_478(tmp_path: Path) -> None:
    """t_relay to a host that does not resolve fails, and sl_reply_error says why (Kamailio's
    478), not a generic 500."""
    script = write_script(
        tmp_path,
        "function ksr_request_route()\n"
        "  if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end\n"
        "end\n",
    )
    caller = await UdpPeer().bind()
    async with running_server(make_config(MODS), script) as server:
        req = sip_request("MESSAGE", ruri="sip:bob@nowhere.invalid", port=caller.port)
        await caller.send(req, udp_addr(server))
        rpl = await caller.recv_reply()
        assert (rpl.status, rpl.reason) == (478, "Unresolvable destination (478/SL)")
    caller.close()


async def test_replies_go_back_on_the_arrival_transport(tmp_path: Path) -> None:
    """A request that came over UDP with a top Via saying TCP: tm's 100 Trying and final
    reply still go back over UDP (there is no TCP listener here at all)."""
    a, b, caller, script = await _setup(tmp_path)
    async with running_server(make_config(MODS), script) as server:
        inv = sip_request("INVITE", ruri="sip:bob@127.0.0.1", port=caller.port)
        inv = inv.replace("SIP/2.0/UDP 127.0.0.1", "SIP/2.0/TCP 127.0.0.1", 1)
        await caller.send(inv, udp_addr(server))
        assert (await caller.recv_reply()).status == 100
        fwd = _req(await a.recv())
        await _answer(a, fwd, 486)
        assert (await caller.recv_reply()).status == 486


async def test_reply_with_only_our_via_goes_upstream_with_the_request_vias(tmp_path: Path) -> None:
    """A callee that answers with ksr's Via alone (a 487 built from its CANCEL, say): the caller
    still gets a reply with its own Via, never one without any."""
    a, b, caller, script = await _setup(tmp_path)
    async with running_server(make_config(MODS), script) as server:
        inv = sip_request("INVITE", ruri="sip:bob@127.0.0.1", port=caller.port)
        await caller.send(inv, udp_addr(server))
        assert (await caller.recv_reply()).status == 100
        fwd = _req(await a.recv())
        rpl = make_reply(fwd, 486, to_tag="callee")
        rpl.headers = [h for h in rpl.headers if h.key != "via"]
        rpl.headers.insert(0, next(h for h in fwd.headers if h.key == "via"))  # ours only
        await a.send(rpl.to_bytes(), udp_addr(server))
        got = await caller.recv_reply()
        assert got.status == 486
        assert [v.port for v in got.vias] == [caller.port]


async def test_answered_transaction_keeps_only_what_retransmissions_need(tmp_path: Path) -> None:
    """Once the final reply is relayed, the transaction lets go of the parsed request and of
    the copies it sent (the collector would walk them for the wait time), and still handles
    what comes later: a retransmitted 2xx goes upstream again (RFC 6026), a retransmitted
    486 is ACKed again and not relayed."""
    a, b, caller, script = await _setup(tmp_path)
    async with running_server(make_config(MODS), script) as server:
        tm = server.module("tm")
        inv = sip_request("INVITE", ruri="sip:bob@127.0.0.1", port=caller.port, call_id="ok-1")
        await caller.send(inv, udp_addr(server))
        assert (await caller.recv_reply()).status == 100
        fwd = _req(await a.recv())
        await _answer(a, fwd, 200)
        assert (await caller.recv_reply()).status == 200
        (tx,) = tm.engine.by_key.values()
        assert tx.request.memo("tm_key") is None  # parsed again only if asked
        assert [br.request for br in tx.branches] == [None]
        await _answer(a, fwd, 200)  # the callee did not get the ACK yet
        assert (await caller.recv_reply()).status == 200

        inv = sip_request(
            "INVITE",
            ruri="sip:bob@127.0.0.1",
            port=caller.port,
            call_id="busy-1",
            branch="z9hG4bK-b",
        )
        await caller.send(inv, udp_addr(server))
        assert (await caller.recv_reply()).status == 100
        fwd = _req(await a.recv())
        await _answer(a, fwd, 486)
        assert (await caller.recv_reply()).status == 486
        assert _req(await a.recv()).method == "ACK"
        await _answer(a, fwd, 486)  # our ACK was lost
        assert _req(await a.recv()).method == "ACK"
        assert await caller.nothing(0.2)


async def test_callbacks_of_one_method_see_only_its_transactions(tmp_path: Path) -> None:
    a, b, caller, script = await _setup(tmp_path)
    async with running_server(make_config(MODS), script) as server:
        api = server.module("tm").api()
        every: list[tuple[str, int]] = []
        invites: list[tuple[str, int]] = []
        api.register_callback("response-out", lambda tx, ev: every.append((tx.method, ev.code)))
        api.register_callback(
            "response-out", lambda tx, ev: invites.append((tx.method, ev.code)), "INVITE"
        )
        for method in ("MESSAGE", "INVITE"):
            req = sip_request(method, ruri="sip:local@127.0.0.1", port=caller.port, call_id=method)
            await caller.send(req, udp_addr(server))
            rpl = await caller.recv_reply()
            while rpl.status < 200:
                rpl = await caller.recv_reply()
        assert every == [("MESSAGE", 404), ("INVITE", 100), ("INVITE", 404)]
        assert invites == [("INVITE", 100), ("INVITE", 404)]


async def test_transaction_without_final_reply_is_freed_after_its_lifetime(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    a, b, caller, script = await _setup(tmp_path)
    cfg = make_config(MODS, modparam={"tm": {"max_noninv_lifetime": 4000, "fr_timer": 2000}})
    async with running_server(cfg, script) as server:
        engine = server.module("tm").engine
        for i in range(3):
            req = sip_request(
                "MESSAGE",
                ruri="sip:keep@127.0.0.1",
                port=caller.port,
                call_id=f"keep-{i}",
                branch=f"z9hG4bK-keep-{i}",
            )
            await caller.send(req, udp_addr(server))
            await trio.sleep(1.0)
        assert len(engine.by_key) == 3  # never answered: only the lifetime guard ends them
        await trio.sleep(2.5)  # the first is past its 4 s + 1 s (swept once a second)
        assert len(engine.by_key) == 2
        await trio.sleep(3.0)
        assert not engine.by_key
        assert server.stats.value("tmx", "inuse_transactions") == 0


async def test_timer_b_made_only_when_timer_a_fires(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Timer B starts with Timer A (RFC 3261 §17.1.1.2) but is made only if A fires: a callee
    that answers within T1 leaves no Timer B behind; one that never answers still gets the
    408 at fr_timer after the INVITE left (Timer B's deadline, within the 1/16 s grid)."""
    a, b, caller, script = await _setup(tmp_path)
    cfg = make_config(MODS, modparam={"tm": {"fr_timer": 2000}})
    async with running_server(cfg, script) as server:
        tm = server.module("tm")
        inv = sip_request("INVITE", ruri="sip:bob@127.0.0.1", port=caller.port, call_id="b-1")
        await caller.send(inv, udp_addr(server))
        assert (await caller.recv_reply()).status == 100
        fwd = _req(await a.recv())
        (tx,) = tm.engine.by_key.values()
        (br,) = tx.branches
        assert set(br.handles) == {"A"}
        assert br.deferred == "B"
        await _answer(a, fwd, 180)
        assert (await caller.recv_reply()).status == 180
        assert set(br.handles) == {"C"}
        assert br.deferred == ""

        inv = sip_request(
            "INVITE", ruri="sip:bob@127.0.0.1", port=caller.port, call_id="b-2", branch="z9hG4bK-2"
        )
        t0 = trio.current_time()
        await caller.send(inv, udp_addr(server))
        assert (await caller.recv_reply()).status == 100
        sent = [_req(await a.recv()) for _ in range(3)]  # at 0, 0.5 and 1.5 s (Timer A)
        assert {r.method for r in sent} == {"INVITE"}
        rpl = await caller.recv_reply(timeout=10)
        assert rpl.status == 408
        assert 2.0 <= trio.current_time() - t0 <= 2.0 + 1 / 16 + 0.01
