"""A transaction started under one script version finishes under it, after a reload too."""

from __future__ import annotations

from pathlib import Path

from ksr.sip.message import Request, parse_message_untrusted
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr

SCRIPT = """
function ksr_request_route()
  if KSR.is_ACK() then return end
  KSR.tm.t_on_failure("on_fail")
  KSR.setdsturi(KSR.pv.get("$hdr(X-Next)"))
  KSR.tm.t_relay()
end
function on_fail()
  KSR.sl.send_reply(480, "failure route of VERSION")
end
"""


async def test_failure_route_runs_in_the_script_the_call_started_with(tmp_path: Path) -> None:
    script = tmp_path / "route.lua"
    script.write_text(SCRIPT.replace("VERSION", "v1"))
    async with running_server(make_config(["sl", "tm", "tmx", "rr"]), script) as server:
        caller = await UdpPeer().bind()
        callee = await UdpPeer().bind()
        invite = sip_request(
            "INVITE",
            "sip:bob@127.0.0.1",
            port=caller.port,
            call_id="pin-1",
            extra=f"X-Next: sip:127.0.0.1:{callee.port}",
        )
        await caller.send(invite, udp_addr(server))
        assert (await caller.recv_reply()).status == 100
        fwd = parse_message_untrusted(await callee.recv())
        assert isinstance(fwd, Request)

        script.write_text(SCRIPT.replace("VERSION", "v2"))
        reply = server.rpc.handle({"jsonrpc": "2.0", "method": "app_lua.reload", "id": 1})
        assert reply["result"]["new"] == 2

        # the callee refuses: the failure route of version 1 answers the caller
        busy = "\r\n".join(
            [
                "SIP/2.0 486 Busy Here",
                *[
                    f"{h.name}: {h.value}"
                    for h in fwd.headers
                    if h.key in ("via", "from", "call-id", "cseq")
                ],
                f"To: {fwd.get('to')};tag=callee",
                "Content-Length: 0",
                "",
                "",
            ]
        )
        await callee.send(busy.encode(), udp_addr(server))
        final = await caller.recv_reply()
        assert (final.status, final.reason) == (480, "failure route of v1")

        # a new call runs in version 2
        await caller.send(
            invite.replace("pin-1", "pin-2").replace("z9hG4bK-test-1", "z9hG4bK-test-2"),
            udp_addr(server),
        )
        assert (await caller.recv_reply()).status == 100
        fwd2 = parse_message_untrusted(await callee.recv(timeout=5))
        while not (isinstance(fwd2, Request) and fwd2.method == "INVITE"):
            fwd2 = parse_message_untrusted(await callee.recv(timeout=5))  # skip the ACK of the 486
        busy2 = busy.replace(fwd.top_via.branch or "", fwd2.top_via.branch or "").replace(
            "pin-1", "pin-2"
        )
        await callee.send(busy2.encode(), udp_addr(server))
        final2 = await caller.recv_reply()
        assert (final2.status, final2.reason) == (480, "failure route of v2")
