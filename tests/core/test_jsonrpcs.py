"""jsonrpcs over a real unix datagram socket against an in-process server."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import uuid
from pathlib import Path

from ksr.core.rpc import rpc
from ksr.modules.jsonrpcs.dgram import CHUNK
from tests.core.rpc_helpers import DgramClient
from tests.support import (
    CAPTURES,
    UdpPeer,
    make_config,
    needs_captures,
    running_server,
    sip_request,
    udp_addr,
    write_script,
)

REPLY_200 = "function ksr_request_route() KSR.sl.sl_send_reply(200, 'OK') end\n"


def _sock_path() -> str:
    return os.path.join(tempfile.gettempdir(), f"ksr_rpc_t_{uuid.uuid4().hex[:12]}.sock")


def _config(path: str, **params: object):  # type: ignore[no-untyped-def]
    return make_config(
        modules=["sl", "jsonrpcs"], modparam={"jsonrpcs": {"dgram_socket": path, **params}}
    )


@needs_captures
async def test_reply_bytes_match_kamailio_capture(tmp_path: Path) -> None:
    """kamcli's exact request for an unknown method gets Kamailio's exact bytes back."""
    cap = json.loads((CAPTURES / "kamcli-16-error-method-not-found.json").read_text())
    path = _sock_path()
    async with running_server(_config(path, pretty_format=1), write_script(tmp_path, REPLY_200)):
        async with DgramClient() as c:
            await c.send_raw(path, cap["request"].encode())
            assert (await c.recv_raw()).decode() == cap["response"]


async def test_core_uptime_and_compact_format(tmp_path: Path) -> None:
    path = _sock_path()
    async with running_server(_config(path), write_script(tmp_path, REPLY_200)):
        async with DgramClient() as c:
            await c.send_raw(path, b'{"jsonrpc":"2.0","method":"core.uptime","id":36}')
            raw = (await c.recv_raw()).decode()
    assert "\n" not in raw
    assert ": " not in raw
    reply = json.loads(raw)
    assert reply["id"] == 36
    assert set(reply["result"]) == {"now", "up_since", "uptime"}
    ctime = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \d{4}$")
    assert ctime.match(reply["result"]["now"])
    assert ctime.match(reply["result"]["up_since"])
    assert isinstance(reply["result"]["uptime"], int)


async def test_statistics_count_real_messages(tmp_path: Path) -> None:
    path = _sock_path()
    async with running_server(_config(path), write_script(tmp_path, REPLY_200)) as srv:
        peer = await UdpPeer().bind()
        addr = udp_addr(srv)
        for i, method in enumerate(["OPTIONS", "OPTIONS", "REGISTER", "FOO"]):
            await peer.send(
                sip_request(method, port=peer.port, branch=f"z9hG4bK-s{i}", call_id=f"s{i}"), addr
            )
            assert (await peer.recv_reply()).status == 200
        # two replies from a downstream peer: a 180 and a 486 to an INVITE (not ours: dropped, but counted)
        for code, reason in ((180, "Ringing"), (486, "Busy Here")):
            await peer.send(
                f"SIP/2.0 {code} {reason}\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-x\n"
                "From: <sip:a@x>;tag=1\nTo: <sip:b@x>;tag=2\nCall-ID: r1\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
                addr,
            )
        async with DgramClient() as c:
            await c.call(path, "core.uptime")  # the replies above are handled before this answer
            stats = (await c.call(path, "stats.get_statistics", "core:", "sl:sent_replies"))[
                "result"
            ]
            one = (await c.call(path, "stats.get_statistics", "rcv_requests_options"))["result"]
            fetched = (await c.call(path, "stats.fetch", "core:rcv_requests"))["result"]
            cleared = (await c.call(path, "stats.clear_statistics", "core:rcv_requests_options"))[
                "result"
            ]
            after = (await c.call(path, "stats.get_statistics", "core:rcv_requests_options"))[
                "result"
            ]
            allstats = (await c.call(path, "stats.get_statistics", "all"))["result"]
        peer.close()
    values = dict(line.split(" = ") for line in stats)
    expect = {
        "core:rcv_requests": "4",
        "core:rcv_requests_options": "2",
        "core:rcv_requests_register": "1",
        "core:unsupported_methods": "1",
        "core:rcv_requests_invite": "0",
        "core:rcv_replies": "2",
        "core:rcv_replies_1xx": "1",
        "core:rcv_replies_18x": "1",
        "core:rcv_replies_1xx_invite": "1",
        "core:rcv_replies_4xx": "1",
        "core:rcv_replies_486": "1",
        "core:rcv_replies_4xx_invite": "1",
        "core:rcv_replies_4xx_bye": "0",
        "sl:sent_replies": "4",
    }
    assert {k: values.get(k) for k in expect} == expect
    assert one == ["core:rcv_requests_options = 2"]
    assert fetched == {"core.rcv_requests": "4"}
    assert cleared == ["core:rcv_requests_options = 2"]
    assert after == ["core:rcv_requests_options = 0"]
    assert allstats == sorted(allstats)
    assert any(s.startswith("shmem:used_size = ") for s in allstats)
    assert (
        int(next(s for s in allstats if s.startswith("shmem:used_size")).split(" = ")[1])
        > 1_000_000
    )


async def test_long_reply_comes_in_several_datagrams(tmp_path: Path) -> None:
    class Big:
        @rpc("test.big")
        def big(self, n: int) -> list[str]:
            return [f"item-{i:06d}-" + "x" * 40 for i in range(n)]

    path = _sock_path()
    async with running_server(_config(path), write_script(tmp_path, REPLY_200)) as srv:
        srv.rpc.add_object(Big())
        async with DgramClient() as c:
            await c.send_raw(path, b'{"jsonrpc":"2.0","method":"test.big","params":[5000],"id":1}')
            parts = [await c.recv_raw()]
            while True:
                try:
                    reply = json.loads(b"".join(parts))
                    break
                except ValueError:
                    parts.append(await c.recv_raw())
    assert len(parts) >= 4
    assert all(len(p) == CHUNK for p in parts[:-1])
    assert len(reply["result"]) == 5000
    assert reply["result"][-1].startswith("item-004999-")


async def test_errors_and_params(tmp_path: Path) -> None:
    path = _sock_path()
    async with running_server(_config(path), write_script(tmp_path, REPLY_200)):
        async with DgramClient() as c:
            await c.send_raw(path, b"{not json")
            assert json.loads(await c.recv_raw())["error"] == {
                "code": -32700,
                "message": "Parse Error",
            }
            await c.send_raw(path, b'["a"]')
            assert json.loads(await c.recv_raw())["error"]["code"] == -32600
            bad = await c.call(path, "system.methodHelp")
            assert bad["error"]["code"] == 500
            assert "Invalid Parameters" in bad["error"]["message"]
            named = await c.call(path, "core.echo", rid=3)
            assert named["result"] == []
            await c.send_raw(
                path, b'{"jsonrpc":"2.0","method":"core.echo","params":{"b":"x","a":2},"id":4}'
            )
            assert json.loads(await c.recv_raw())["result"] == [
                "x",
                2,
            ]  # named params: order counts
            methods = (await c.call(path, "system.listMethods"))["result"]
            assert {
                "core.uptime",
                "core.ps",
                "core.psx",
                "stats.get_statistics",
                "system.methodHelp",
            } <= set(methods)
            doc = (await c.call(path, "system.methodHelp", "core.uptime"))["result"]
            assert "start" in doc
            ps = (await c.call(path, "core.ps"))["result"]
            assert ps[0] == os.getpid()
            assert "sock=udp:127.0.0.1:" in ps[1]
            psx = (await c.call(path, "core.psx"))["result"]
            assert psx[0]["IDX"] == 0
            assert psx[0]["PID"] == os.getpid()


async def test_socket_file_lifecycle(tmp_path: Path) -> None:
    path = _sock_path()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(path)
    stale.close()  # the file stays: a stale socket of a server that died
    script = write_script(tmp_path, REPLY_200)
    async with running_server(_config(path, dgram_mode=0o600), script) as first:
        assert first.module("jsonrpcs").dgram is not None
        assert os.stat(path).st_mode & 0o777 == 0o600
        # a second server must not steal a socket that a live server answers on
        async with running_server(_config(path), script) as second:
            assert second.module("jsonrpcs").dgram is None
        assert os.path.exists(path)
        async with DgramClient() as c:
            assert (await c.call(path, "core.version"))["result"].startswith("ksr ")
    assert not os.path.exists(path)  # removed on stop


async def test_ksr_jsonrpcs_exec_from_the_script(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """
function ksr_request_route()
    local doc = KSR.hdr.get("X-Rpc")
    local rc = KSR.jsonrpcs.exec(doc)
    local body = KSR.jsonrpcs.response()
    local reason = rc .. "/" .. KSR.pv.get("$jsonrpl(code)") .. "/" .. KSR.pv.get("$jsonrpl(text)")
    KSR.hdr.append_to_reply("X-Body: " .. string.gsub(body, "[\\r\\n\\t]", "") .. "\\r\\n")
    KSR.sl.sl_send_reply(200, reason .. "/" .. KSR.jsonrpcs.dispatch())
end
""",
    )
    async with running_server(_config(_sock_path()), script) as srv:
        peer = await UdpPeer().bind()
        docs = [
            '{"jsonrpc":"2.0","method":"core.echo","params":["hi"],"id":1}',
            '{"jsonrpc":"2.0","method":"no.such","id":2}',
            "{bad",
        ]
        replies = []
        for i, doc in enumerate(docs):
            await peer.send(
                sip_request(
                    port=peer.port, branch=f"z9hG4bK-e{i}", call_id=f"e{i}", extra=f"X-Rpc: {doc}"
                ),
                udp_addr(srv),
            )
            replies.append(await peer.recv_reply())
        peer.close()
    assert [r.reason for r in replies] == [
        "1/200/OK/-1",
        "1/500/Method Not Found/-1",
        "-1/-32700/Parse Error/-1",
    ]
    assert json.loads(replies[0].get("X-Body") or "")["result"] == ["hi"]
