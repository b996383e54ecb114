"""Names in the hosts file are answered before DNS, as the system resolver does."""

from __future__ import annotations

from pathlib import Path

from ksr.core.resolver import read_hosts_file
from ksr.sip.message import Request, parse_message_untrusted
from tests.support import (
    UdpPeer,
    free_port,
    make_config,
    running_server,
    sip_request,
    udp_addr,
    write_script,
)

SCRIPT = """
function ksr_request_route()
  if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
end
"""


def test_hosts_file_parsing(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "# comment\n::1 both.test\n127.0.0.2 both.test Alias.Test  # trailing\n"
        "10.0.0.1\n::2 six.test\n"
    )
    assert read_hosts_file(str(hosts)) == {
        "both.test": "127.0.0.2",
        "alias.test": "127.0.0.2",
        "six.test": "::2",
    }
    assert read_hosts_file(str(tmp_path / "missing")) == {}


async def test_relay_to_a_name_from_the_hosts_file_without_dns(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 callee.example.test\n")
    dead_dns = f"127.0.0.1:{free_port()}"  # nothing answers there: DNS must not be needed
    config = make_config(
        ["sl", "tm", "tmx"], dns_hosts_file=str(hosts), dns_servers=[dead_dns], dns_timeout=1.0
    )
    async with running_server(config, write_script(tmp_path, SCRIPT)) as server:
        caller = await UdpPeer().bind()
        callee = await UdpPeer().bind()
        req = sip_request("MESSAGE", f"sip:bob@callee.example.test:{callee.port}", port=caller.port)
        await caller.send(req, udp_addr(server))
        fwd = parse_message_untrusted(await callee.recv())
        assert isinstance(fwd, Request)
        assert fwd.method == "MESSAGE"
        assert fwd.uri == f"sip:bob@callee.example.test:{callee.port}"
