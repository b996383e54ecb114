"""maxfwd on a real server: the forwarded request carries the new Max-Forwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.sip.message import Request, parse_message_untrusted
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

LUA = """
function ksr_request_route()
  local rc = KSR.maxfwd.process_maxfwd(10)
  if rc == -1 then KSR.sl.sl_send_reply(483, "Too Many Hops") return end
  if rc == -2 then KSR.sl.sl_send_reply(400, "Bad Max-Forwards") return end
  KSR.hdr.append("X-RC: " .. rc .. "\\r\\n")
  KSR.hdr.append("X-Lt5: " .. KSR.maxfwd.is_maxfwd_lt(5) .. "\\r\\n")
  -- a second call changes nothing more
  KSR.hdr.append("X-Again: " .. KSR.maxfwd.process_maxfwd(10) .. "\\r\\n")
  KSR.forward_uri("sip:127.0.0.1:" .. KSR.hdr.get("X-Next"))
end
"""


def request(port: int, next_port: int, mf: str | None, n: int) -> bytes:
    lines = [
        "OPTIONS sip:bob@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-mf{n};rport",
        "From: <sip:alice@127.0.0.1>;tag=1",
        "To: <sip:bob@127.0.0.1>",
        f"Call-ID: mf-{n}",
        f"CSeq: {n} OPTIONS",
        f"X-Next: {next_port}",
    ]
    if mf is not None:
        lines.insert(2, f"Max-Forwards: {mf}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


# (received Max-Forwards, forwarded value, process_maxfwd rc, is_maxfwd_lt(5))
FORWARDED = [
    ("70", "69", 1, -1),
    (None, "10", 2, -2),
    ("1", "0", 1, 1),
    ("0068", "67", 1, -1),
    ("200", "100", 1, -1),  # above max_limit (100 here): lowered
]
REJECTED = [("0", 483), ("256", 400), ("abc", 400), ("-1", 400), ("", 400)]


async def test_forwarded_values(tmp_path: Path) -> None:
    cfg = make_config(["sl", "maxfwd"], {"maxfwd": {"max_limit": 100}})
    async with running_server(cfg, write_script(tmp_path, LUA)) as server:
        a = await UdpPeer().bind()
        b = await UdpPeer().bind()
        for n, (mf, fwd, rc, lt) in enumerate(FORWARDED):
            await a.send(request(a.port, b.port, mf, n), udp_addr(server))
            out = parse_message_untrusted(await b.recv())
            assert isinstance(out, Request)
            assert out.get_all("max-forwards") == [fwd], mf
            assert out.get("x-rc") == str(rc)
            assert out.get("x-lt5") == str(lt)
            assert out.get("x-again") == str(rc)
        a.close()
        b.close()


@pytest.mark.parametrize(("mf", "status"), REJECTED)
async def test_rejected(tmp_path: Path, mf: str, status: int) -> None:
    async with running_server(make_config(["sl", "maxfwd"]), write_script(tmp_path, LUA)) as server:
        a = await UdpPeer().bind()
        await a.send(request(a.port, a.port, mf, 1), udp_addr(server))
        assert (await a.recv_reply()).status == status
        a.close()
