"""Hot reload through the RPC commands, on a real server, and the script guard rails."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from ksr.core.server import Server
from tests.support import UdpPeer, free_port, make_config, running_server, sip_request, udp_addr

LUA_V = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "v{n}")
end
"""

PY_V = """
import KSR
from helper import tag

class R:
    def ksr_request_route(self, msg):
        KSR.sl.sl_send_reply(200, tag() + "{n}")

def mod_init():
    return R()
"""


def rpc(server: Server, method: str, *params: Any) -> dict[str, Any]:
    reply = server.rpc.handle({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
    assert reply is not None
    return reply


async def ask(peer: UdpPeer, server: Server, n: int = 1) -> tuple[int, str]:
    await peer.send(
        sip_request(port=peer.port, branch=f"z9hG4bK-r{n}", call_id=f"c{n}"), udp_addr(server)
    )
    r = await peer.recv_reply()
    return r.status, r.reason


@pytest.fixture
async def peer():  # type: ignore[no-untyped-def]
    p = await UdpPeer().bind()
    yield p
    p.close()


async def test_lua_reload_swaps_version(tmp_path: Path, peer: UdpPeer) -> None:
    script = tmp_path / "route.lua"
    script.write_text(LUA_V.format(n=1))
    async with running_server(make_config(), script) as server:
        assert await ask(peer, server, 1) == (200, "v1")
        script.write_text(LUA_V.format(n=2))
        reply = rpc(server, "app_lua.reload")
        assert reply["result"]["old"] == 1
        assert reply["result"]["new"] == 2
        assert reply["result"]["file"] == str(script)
        assert await ask(peer, server, 2) == (200, "v2")
        listed = rpc(server, "app_lua.list")["result"]["scripts"]
        assert listed[0]["version"] == 2
        assert listed[0]["file"] == str(script)


@pytest.mark.parametrize(
    ("broken", "line", "words"),
    [
        ("function ksr_request_route()\n  if then\nend\n", 2, "syntax error"),
        (
            "function ksr_request_route()\n  KSR.sl.no_such_fn(1)\nend\n",
            2,
            "unknown function KSR.sl.no_such_fn",
        ),
        ("function other()\nend\n", None, "ksr_request_route"),
        ("x = nil\nx.y = 1\nfunction ksr_request_route() end\n", 2, "error running the script"),
        ("while true do end\nfunction ksr_request_route() end\n", 1, "instruction budget"),
    ],
)
async def test_broken_lua_is_refused_and_old_stays(
    tmp_path: Path,
    peer: UdpPeer,
    caplog: pytest.LogCaptureFixture,
    broken: str,
    line: int | None,
    words: str,
) -> None:
    script = tmp_path / "route.lua"
    script.write_text(LUA_V.format(n=1))
    async with running_server(make_config(script_max_instructions=1_000_000), script) as server:
        script.write_text(broken)
        with caplog.at_level(logging.ERROR, logger="ksr.script"):
            reply = rpc(server, "app_lua.reload")
        message = reply["error"]["message"]
        assert words in message
        where = f"{script}:{line}:" if line else f"{script}:"
        assert where in message
        assert any(where in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)
        assert server.engine is not None
        assert server.engine.version == 1
        assert await ask(peer, server) == (200, "v1")


async def test_python_reload_refreshes_helpers(tmp_path: Path, peer: UdpPeer) -> None:
    script = tmp_path / "route.py"
    helper = tmp_path / "helper.py"
    helper.write_text("def tag():\n    return 'a'\n")
    script.write_text(PY_V.format(n=1))
    try:
        async with running_server(make_config(), script) as server:
            assert await ask(peer, server, 1) == (200, "a1")
            helper.write_text("def tag():\n    return 'b'\n")
            script.write_text(PY_V.format(n=2))
            reply = rpc(server, "app_python.reload")
            assert (reply["result"]["old"], reply["result"]["new"]) == (1, 2)
            assert await ask(peer, server, 2) == (200, "b2")
            # alias, and a broken helper: refused, and the running version keeps its helpers
            helper.write_text("def tag(:\n")
            reply = rpc(server, "app_python3.reload")
            assert f"{helper}:1" in reply["error"]["message"]
            assert await ask(peer, server, 3) == (200, "b2")
            assert sys.modules["helper"].tag() == "b"
            assert "app_lua" not in rpc(server, "app_lua.reload").get("result", {})
    finally:
        sys.modules.pop("helper", None)


async def test_api_list_names_every_function(tmp_path: Path) -> None:
    script = tmp_path / "route.lua"
    script.write_text(LUA_V.format(n=1))
    server = Server(make_config(), script)
    server.load_script()
    for method in ("app_lua.api_list", "app_python.api_list"):
        result = rpc(server, method)["result"]
        names = {(m["module"], m["name"]) for m in result["methods"]}
        assert ("sl", "sl_send_reply") in names
        assert ("", "is_OPTIONS") in names
        assert result["msize"] == len(result["methods"])
        send = next(m for m in result["methods"] if m["name"] == "sl_send_reply")
        assert send["ret"] == "int"
        assert send["params"] == ["int code", "str reason"]


async def test_reload_disabled_by_modparam(tmp_path: Path) -> None:
    script = tmp_path / "route.lua"
    script.write_text(LUA_V.format(n=1))
    server = Server(make_config(modparam={"app_lua": {"reload": 0}}), script)
    server.load_script()
    assert "disabled" in rpc(server, "app_lua.reload")["error"]["message"]
    assert server.engine is not None
    assert server.engine.version == 1


async def test_transaction_keeps_its_script_version(tmp_path: Path) -> None:
    """A route of a transaction started under version 1 runs in version 1 after a reload."""
    script = tmp_path / "route.lua"
    text = "function ksr_request_route() end\nfunction fail_route() KSR.setflag({n}) end\n"
    script.write_text(text.replace("{n}", "1"))
    server = Server(make_config(), script)
    old = server.load_script()
    script.write_text(text.replace("{n}", "2"))
    rpc(server, "app_lua.reload")
    ctx = server.faked_context()
    ctx.tx = SimpleNamespace(engine=old)  # what tm pins on a transaction it creates
    assert server.engine_for(ctx) is old
    assert server.run_route(ctx, "fail_route") == 1
    assert ctx.flags == 1 << 1
    plain = server.faked_context()
    assert server.run_route(plain, "fail_route") == 1
    assert plain.flags == 1 << 2
    assert server.engine_for(plain) is server.engine
    assert server.engine is not old


async def test_watch_reloads_on_change(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    script = tmp_path / "route.lua"
    script.write_text(LUA_V.format(n=1))
    cfg = make_config(modparam={"app_lua": {"reload_watch": 1, "reload_watch_interval": 0.5}})
    async with running_server(cfg, script) as server:
        await trio.sleep(1)
        assert server.engine is not None
        assert server.engine.version == 1
        script.write_text(LUA_V.format(n=2) + "\n-- changed\n")
        await trio.sleep(1)
        assert server.engine.version == 2
        script.write_text("broken(")  # refused once, not retried every tick
        await trio.sleep(2)
        assert server.engine.version == 2
        script.write_text(LUA_V.format(n=3))
        await trio.sleep(1)
        assert server.engine.version == 3


# -- guard rails ---------------------------------------------------------------------------


RUNAWAY_LUA = """
function spin()
  local i = 0
  while true do i = i + 1 end
end
function deep(n) return 1 + deep(n + 1) end
function hog()
  local t = {}
  for i = 1, 1e9 do t[i] = string.rep("x", 64) .. i end
end
function ksr_request_route()
  local ru = KSR.pv.get("$rU")
  if ru == "spin" then spin() end
  if ru == "deep" then deep(1) end
  if ru == "hog" then hog() end
  KSR.sl.sl_send_reply(200, "fine")
end
"""


@pytest.mark.parametrize("runtime", ["lua51", "luajit", "lua54"])
async def test_runaway_lua_costs_one_message(
    tmp_path: Path, peer: UdpPeer, caplog: pytest.LogCaptureFixture, runtime: str
) -> None:
    script = tmp_path / "route.lua"
    script.write_text(RUNAWAY_LUA)
    cfg = make_config(
        script_max_instructions=2_000_000, lua_runtime=runtime, lua_max_memory=32 * 1024 * 1024
    )
    kinds = ["spin", "deep"] + ([] if runtime == "luajit" else ["hog"])
    async with running_server(cfg, script) as server:
        for n, kind in enumerate(kinds):
            with caplog.at_level(logging.ERROR, logger="ksr.script"):
                await peer.send(
                    sip_request(
                        ruri=f"sip:{kind}@127.0.0.1",
                        port=peer.port,
                        branch=f"z9hG4bK-{kind}",
                        call_id=kind,
                    ),
                    udp_addr(server),
                )
                r = await peer.recv_reply(timeout=20)
            assert r.status == 500, kind
            if kind == "spin":
                assert any(
                    f"{script}:4" in rec.getMessage() and "budget" in rec.getMessage()
                    for rec in caplog.records
                )
            assert await ask(peer, server, 100 + n) == (200, "fine")


async def test_runaway_python_costs_one_message(
    tmp_path: Path, peer: UdpPeer, caplog: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "route.py"
    script.write_text(
        "import KSR\n\nclass R:\n    def ksr_request_route(self, msg):\n"
        "        if KSR.pv.get('$rU') == 'spin':\n"
        "            while True:\n"
        "                try:\n                    KSR.pv.get('$rU')\n"
        "                except Exception:\n                    pass\n"
        "        KSR.sl.sl_send_reply(200, 'fine')\n\n"
        "def mod_init():\n    return R()\n"
    )
    async with running_server(make_config(script_max_seconds=0.2), script) as server:
        with caplog.at_level(logging.ERROR, logger="ksr.script"):
            await peer.send(
                sip_request(ruri="sip:spin@127.0.0.1", port=peer.port, call_id="spin"),
                udp_addr(server),
            )
            r = await peer.recv_reply(timeout=10)
        assert r.status == 500
        assert any("exceeded" in rec.getMessage() for rec in caplog.records)
        assert await ask(peer, server, 2) == (200, "fine")


# -- reload under load (real sipp) --------------------------------------------------------

OPTIONS_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="options">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:ksr@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:ksr@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""

VERSIONED = {
    "lua": 'function ksr_request_route()\n  KSR.sl.sl_send_reply(200, "{label}")\nend\n',
    "py": "import KSR\n\nclass R:\n    def ksr_request_route(self, msg):\n"
    "        KSR.sl.sl_send_reply(200, '{label}')\n\ndef mod_init():\n    return R()\n",
}
BROKEN = {
    "lua": "function ksr_request_route(\n  -- {label}\n",
    "py": "def mod_init(:\n    # {label}\n",
}


@pytest.mark.sipp
@pytest.mark.parametrize("lang", ["lua", "py"])
async def test_twenty_reloads_under_sipp_load(tmp_path: Path, lang: str) -> None:
    script = tmp_path / f"route.{lang}"
    script.write_text(VERSIONED[lang].format(label="v0"))
    scenario = tmp_path / "options.xml"
    scenario.write_text(OPTIONS_SCENARIO)
    method = "app_lua.reload" if lang == "lua" else "app_python.reload"
    good: list[str] = ["v0"]
    async with running_server(make_config(), script) as server:
        host, port = udp_addr(server)
        sipp_port = free_port()
        args = [
            "sipp",
            "-sf",
            str(scenario),
            "-m",
            "400",
            "-r",
            "100",
            "-i",
            "127.0.0.1",
            "-p",
            str(sipp_port),
            "-trace_msg",
            "-nostdin",
            "-timeout",
            "60s",
            f"{host}:{port}",
        ]
        async with trio.open_nursery() as nursery:
            result: dict[str, Any] = {}

            async def run_sipp() -> None:
                result["proc"] = await trio.run_process(
                    args, cwd=str(tmp_path), capture_stdout=True, capture_stderr=True, check=False
                )

            nursery.start_soon(run_sipp)
            await trio.sleep(0.3)
            for n in range(1, 21):
                label = f"v{n}"
                broken = n % 5 == 3  # four broken versions in between
                script.write_text((BROKEN if broken else VERSIONED)[lang].format(label=label))
                reply = rpc(server, method)
                if broken:
                    assert "error" in reply, reply
                else:
                    assert reply["result"]["new"] == len(good) + 1, reply
                    good.append(label)
                await trio.sleep(0.12)
        proc = result["proc"]
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert server.engine is not None
        assert server.engine.version == len(good) == 17
        # after the last reload, new messages get the last version (sipp may have finished
        # before it on a busy machine, so ask once more)
        peer = await UdpPeer().bind()
        await peer.send(
            sip_request("OPTIONS", port=peer.port, call_id="after-reloads"), (host, port)
        )
        assert (await peer.recv_reply()).reason == good[-1]
        peer.close()
    trace = next(tmp_path.glob("options_*_messages.log")).read_text()
    seen = re.findall(r"SIP/2\.0 200 (v\d+)", trace)
    assert len(seen) >= 400
    assert set(seen) <= set(good)  # never a broken version
    assert len(set(seen)) >= 10  # the version in use changed along the run
    order = [good.index(label) for label in seen]
    assert order == sorted(order)  # once a version answered, no older one answered again
