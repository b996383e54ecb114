"""KSR.permissions: the address table from an SQLite database (ksr.db) and from address_file,
through a real script on UDP, and the permissions.* RPC."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.core.config import ConfigError
from ksr.core.server import Server
from ksr.db import open_store
from ksr.db.kamailio import ADDRESS
from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

SCRIPT = """
function ksr_request_route()
  if KSR.permissions.allow_source_address(1) > 0 then
    KSR.sl.sl_send_reply(200, "trusted")
    return
  end
  KSR.sl.sl_send_reply(403, "group " .. KSR.permissions.allow_source_address_group())
end
"""


async def _ask(server: Server, peer: UdpPeer, n: int) -> tuple[int, str]:
    await peer.send(sip_request(port=peer.port, branch=f"z9hG4bK-perm{n}"), udp_addr(server))
    rpl = await peer.recv_reply()
    return rpl.status, rpl.reason


async def test_address_table_in_sqlite(tmp_path: Path) -> None:
    a, b = await UdpPeer().bind(), await UdpPeer().bind()
    url = f"sqlite:///{tmp_path}/perm.sqlite"
    store = open_store(url)
    table = store.table(ADDRESS.spec())  # Kamailio's address table
    table.put({"id": 1, "grp": 1, "ip_addr": "127.0.0.1", "mask": 32, "port": a.port, "tag": "a"})
    table.put({"id": 2, "grp": 7, "ip_addr": "127.0.0.0", "mask": 8, "port": 0, "tag": None})
    cfg = make_config(["sl", "jsonrpcs", "permissions"], {"permissions": {"db_url": url}})
    async with running_server(cfg, write_script(tmp_path, SCRIPT)) as server:
        assert await _ask(server, a, 1) == (200, "trusted")
        assert await _ask(server, b, 2) == (403, "group 7")  # other port: only the subnet
        assert server.rpc.call("permissions.addressDump", []) == [
            {"gid": 1, "ip": "127.0.0.1", "port": a.port, "tag": "a"}
        ]
        sub = server.rpc.call("permissions.subnetDump", [])
        assert [(s["grp"], s["ip_addr"], s["mask"], s["port"]) for s in sub] == [
            (7, "127.0.0.0", 8, 0)
        ]
        # b is added to group 1 and the table reloaded
        table.put({"id": 3, "grp": 1, "ip_addr": "127.0.0.1", "mask": 32, "port": b.port})
        table.delete(2)
        assert server.rpc.call("permissions.addressReload", []) == "Ok. Reload successful."
        assert await _ask(server, b, 3) == (200, "trusted")
        assert server.rpc.call("permissions.subnetDump", []) == []
        # a reload that fails keeps the entries in use
        server.modules["permissions"].params.db_url = "postgres://ksr@127.0.0.1:1/none"
        with pytest.raises(Exception, match="Reload failed"):
            server.rpc.call("permissions.addressReload", [])
        assert await _ask(server, a, 4) == (200, "trusted")
    store.close()
    a.close()
    b.close()


async def test_address_file(tmp_path: Path) -> None:
    peer = await UdpPeer().bind()
    f = tmp_path / "address.txt"
    f.write_text("# grp ip[/mask] [port [tag]]\n2 127.0.0.1\n\n3 10.0.0.0/8 5060 gw\n")
    cfg = make_config(["sl", "permissions"], {"permissions": {"address_file": str(f)}})
    async with running_server(cfg, write_script(tmp_path, SCRIPT)) as server:
        assert await _ask(server, peer, 1) == (403, "group 2")
        f.write_text(f"1 127.0.0.1 {peer.port}\n")
        server.rpc.call("permissions.addressReload", [])
        assert await _ask(server, peer, 2) == (200, "trusted")
    peer.close()


@pytest.mark.parametrize("lang", LANGS)
def test_allow_address(lang: str, tmp_path: Path) -> None:
    f = tmp_path / "address.txt"
    f.write_text("1 192.0.2.10 5060 pbx\n1 198.51.100.0/24\n2 2001:db8::/32 0\n3 192.0.2.10\n")
    s = server_with(["permissions"], {"permissions": {"address_file": str(f)}})
    got = run_exprs(
        s,
        lang,
        [
            "KSR.permissions.allow_address(1, '192.0.2.10', 5060)",
            "KSR.permissions.allow_address(1, '192.0.2.10', 5070)",
            "KSR.permissions.allow_address(3, '192.0.2.10', 5070)",
            "KSR.permissions.allow_address(1, '198.51.100.77', 9)",
            "KSR.permissions.allow_address(1, '198.51.101.1', 9)",
            "KSR.permissions.allow_address(2, '2001:db8:1::5', 5060)",
            "KSR.permissions.allow_address(2, 'bogus', 5060)",
            "KSR.permissions.allow_address_group('192.0.2.10', 5060)",
            "KSR.permissions.allow_address_group('192.0.2.10', 1)",
            "KSR.permissions.allow_address_group('[2001:db8::9]', 1)",
            "KSR.permissions.allow_address_group('203.0.113.1', 5060)",
            "KSR.permissions.allow_source_address(1)",
            "KSR.permissions.allow_source_address_group()",
        ],
        tmp_path,
        ctx=context(s),
    )
    assert got == [1, -1, 1, 1, -1, 1, -1, 1, 3, 2, -1, -1, -1]


def test_bad_address_file_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "address.txt"
    f.write_text("1 not-an-ip\n")
    with pytest.raises(ConfigError, match=r"address\.txt:1"):
        server_with(["permissions"], {"permissions": {"address_file": str(f)}})
    with pytest.raises(ConfigError, match="address_file"):
        server_with(["permissions"], {"permissions": {"address_file": str(tmp_path / "none")}})
