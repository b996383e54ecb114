"""nathelper's NAT keepalive pings of registered contacts, through real scripts and sockets.

A script marks NATed REGISTERs as Kamailio configurations do (nat_uac_test, fix_nated_register,
setbflag) before registrar.save; the pings must then reach the peers' real UDP sockets. The
mock clock jumps over the ping interval."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

from ksr.core.server import Server
from ksr.sip.message import Request, parse_message_untrusted
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

NAT_BFLAG, SIPPING_BFLAG = 6, 7

LUA = """
function ksr_request_route()
  if KSR.is_REGISTER() then
    if KSR.nathelper.nat_uac_test(1) > 0 then
      KSR.nathelper.fix_nated_register()
      KSR.setbflag(6)
      if KSR.hdr.is_present("X-Sipping") > 0 then KSR.setbflag(7) end
    end
    KSR.registrar.save("location", 0)
    return
  end
  KSR.sl.sl_send_reply(404, "Not here")
end

function ksr_reply_route()
  KSR.pv.seti("$shv(replies)", (KSR.pv.get("$shv(replies)") or 0) + 1)
end
"""


def config(**nathelper: Any) -> Any:
    return make_config(
        ["sl", "usrloc", "registrar", "nathelper"],
        {"usrloc": {"nat_bflag": NAT_BFLAG}, "nathelper": nathelper},
    )


def register(peer: UdpPeer, user: str, contact_host: str, sipping: bool = False) -> str:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK-reg-{user};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@127.0.0.1>;tag=ft-{user}",
        f"To: <sip:{user}@127.0.0.1>",
        f"Call-ID: reg-{user}",
        "CSeq: 1 REGISTER",
        f"Contact: <sip:{user}@{contact_host}>",
        "Expires: 3600",
    ]
    if sipping:
        lines.append("X-Sipping: yes")
    return "\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n"


async def registered(
    server: Server, user: str, nated: bool, sipping: bool = False
) -> tuple[UdpPeer, str]:
    """A peer registered as ``user``; a NATed one advertises a private Contact address."""
    peer = await UdpPeer().bind()
    host = "192.168.1.20:5070" if nated else f"127.0.0.1:{peer.port}"
    await peer.send(register(peer, user, host, sipping), udp_addr(server))
    assert (await peer.recv_reply()).status == 200
    return peer, f"sip:{user}@{host}"


def clock_driven_usrloc(server: Server) -> None:
    """usrloc's wall-clock time follows trio's (mock) clock from now on."""
    ul = server.module("usrloc")
    wall, start = time.time(), trio.current_time()
    ul.now = lambda: wall + trio.current_time() - start


async def test_sip_ping_to_nated_contact_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = config(
        natping_interval=10,
        ping_nated_only=1,
        sipping_bflag=SIPPING_BFLAG,
        sipping_from="sip:pinger@ksr.example",
    )
    async with running_server(cfg, write_script(tmp_path, LUA)) as server:
        ul = server.module("usrloc")
        nated, nated_uri = await registered(server, "alice", nated=True, sipping=True)
        plain, _ = await registered(server, "bob", nated=False)
        # registrar stored the REGISTER's branch flags; usrloc lists by nat_bflag
        flags = {c.aor: c.cflags for _, c in ul.live_contacts()}
        assert flags == {"alice": 1 << NAT_BFLAG | 1 << SIPPING_BFLAG, "bob": 0}
        assert [c.aor for _, c in ul.live_contacts(ul.nat_flag)] == ["alice"]

        ping = parse_message_untrusted(await nated.recv(timeout=12))
        assert isinstance(ping, Request)
        assert ping.method == "OPTIONS"
        assert ping.uri == nated_uri  # sent to the received address, addressed to the Contact
        assert ping.from_.uri_text == "sip:pinger@ksr.example"
        assert ping.to.uri_text == nated_uri
        assert ping.cseq.method == "OPTIONS"
        assert ping.top_via.port == udp_addr(server)[1]
        assert await plain.nothing(timeout=25)  # ping_nated_only: never pinged

        # the answer goes through the reply route (as in Kamailio) and is absorbed there
        answer = (
            "SIP/2.0 200 OK\r\n"
            + "".join(
                f"{h.name}: {h.value}\r\n"
                for h in ping.headers
                if h.key in ("via", "from", "to", "call-id", "cseq")
            )
            + "Content-Length: 0\r\n\r\n"
        )
        dropped = server.stats.value("core", "drop_replies")
        await nated.send(answer, udp_addr(server))
        await trio.sleep(0.5)
        assert server.shared_vars.get("replies") == 1
        assert server.stats.value("core", "drop_replies") == dropped
        nated.close()
        plain.close()


async def test_keepalive_bytes_without_sipping_flag(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = config(natping_interval=5, sipping_bflag=SIPPING_BFLAG, sipping_from="sip:p@ksr")
    async with running_server(cfg, write_script(tmp_path, LUA)) as server:
        nated, _ = await registered(server, "carol", nated=True)
        plain, _ = await registered(server, "dave", nated=False)
        # ping_nated_only = 0: every contact, here with Kamailio's four zero bytes
        assert await nated.recv(timeout=7) == b"\x00\x00\x00\x00"
        assert await plain.recv(timeout=7) == b"\x00\x00\x00\x00"
        # and again on the next interval
        assert await nated.recv(timeout=7) == b"\x00\x00\x00\x00"
        nated.close()
        plain.close()


async def test_pings_spread_over_the_interval(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = config(natping_interval=4)
    async with running_server(cfg, write_script(tmp_path, LUA)) as server:
        peers = [(await registered(server, f"u{i}", nated=True))[0] for i in range(8)]
        pinger = server.module("nathelper").pinger
        await trio.sleep(0.5)  # between two ticks of the one-second ping timer
        start = pinger.sent
        sent_per_second = []
        for _ in range(4):
            before = pinger.sent
            await trio.sleep(1)
            sent_per_second.append(pinger.sent - before)
        assert sent_per_second == [2, 2, 2, 2]  # 8 contacts over 4 seconds, not one burst
        assert pinger.sent - start == 8
        for p in peers:
            assert await p.recv(timeout=5) == b"\x00\x00\x00\x00"
            p.close()


async def test_unanswered_sip_pings_expire_the_contact(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = make_config(
        ["sl", "usrloc", "registrar", "nathelper"],
        {
            "usrloc": {"nat_bflag": NAT_BFLAG, "timer_interval": 5},
            "registrar": {"event_callback": "on_expired"},
            "nathelper": {
                "natping_interval": 5,
                "ping_nated_only": 1,
                "sipping_bflag": SIPPING_BFLAG,
                "sipping_from": "sip:pinger@ksr.example",
                "keepalive_timeout": 20,
            },
        },
    )
    script = (
        LUA
        + """
function on_expired(evname)
  KSR.pv.sets("$shv(expired)", KSR.pv.get("$ulc(exp=>aor)"))
end
"""
    )
    async with running_server(cfg, write_script(tmp_path, script)) as server:
        clock_driven_usrloc(server)
        ul = server.module("usrloc")
        alive, _ = await registered(server, "erin", nated=True, sipping=True)
        silent, _ = await registered(server, "fred", nated=True, sipping=True)

        async def answer_pings() -> None:
            while True:
                ping = parse_message_untrusted(await alive.recv(timeout=60))
                assert isinstance(ping, Request)
                await alive.send(
                    "SIP/2.0 200 OK\r\n"
                    + "".join(
                        f"{h.name}: {h.value}\r\n"
                        for h in ping.headers
                        if h.key in ("via", "from", "to", "call-id", "cseq")
                    )
                    + "Content-Length: 0\r\n\r\n",
                    udp_addr(server),
                )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_pings)
            await trio.sleep(45)
            nursery.cancel_scope.cancel()
        assert [c.aor for _, c in ul.live_contacts()] == ["erin"]
        assert server.shared_vars.get("expired") == "fred"
        alive.close()
        silent.close()
