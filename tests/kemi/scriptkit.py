"""Run KSR expressions through the real Lua and Python engines and collect what they return.

An expression list is written once (calls with quoted strings and ints read the same in both
languages); each language gets a generated script whose route ``t`` evaluates the expressions in
order and keeps the results, which are read back from the script's own state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ksr.core.context import MsgContext
from ksr.core.server import Server
from ksr.sip.message import parse_message_untrusted
from tests.support import make_config, sip_request

LANGS = ("lua", "python")


def server_with(
    modules: list[str], modparam: dict[str, dict[str, Any]] | None = None, **core: Any
) -> Server:
    return Server(make_config(["sl", *modules], modparam, **core))


def context(server: Server, text: str | None = None, src_port: int = 5090) -> MsgContext:
    raw = (text or sip_request("INVITE", port=src_port)).replace("\r\n", "\n").replace("\n", "\r\n")
    msg = parse_message_untrusted(raw.encode())
    ctx = MsgContext(
        server, msg, "127.0.0.1", src_port, server.listeners[0] if server.listeners else None
    )
    server.apply_received(ctx)
    return ctx


def _lua(exprs: list[str], prelude: str) -> str:
    body = "\n".join(f"  R[{i + 1}] = {{v = ({e})}}" for i, e in enumerate(exprs))
    return f"""
R = {{}}
{prelude}
function ksr_request_route() end
function t()
  R = {{}}
{body}
end
"""


def _py(exprs: list[str], prelude: str) -> str:
    body = "\n".join(f"        R.append({e})" for e in exprs) or "        pass"
    return f"""
import KSR
{prelude}
R = []

class H:
    def ksr_request_route(self, msg):
        return 1

    def t(self, msg):
        R.clear()
{body}
        return 1

def mod_init():
    return H()
"""


def run_exprs(
    server: Server,
    lang: str,
    exprs: list[str],
    tmp: Path,
    ctx: MsgContext | None = None,
    prelude: str = "",
) -> list[Any]:
    """Evaluate the expressions in order in one route run; their values as Python objects."""
    path = tmp / ("t.lua" if lang == "lua" else f"t_{lang}_{abs(hash(tuple(exprs)))}.py")
    path.write_text(_lua(exprs, prelude) if lang == "lua" else _py(exprs, prelude))
    engine = server.load_script(path)
    rc = server.run_route(ctx or context(server), "t")
    assert rc == 1, f"route t failed ({rc})"
    if lang == "lua":
        table = engine.lua.globals().R  # type: ignore[attr-defined]
        return [_from_lua(table[i + 1]["v"]) for i in range(len(exprs))]
    return list(engine.module.R)  # type: ignore[attr-defined]


def _from_lua(v: Any) -> Any:
    if type(v).__name__ == "_LuaTable":
        keys = list(v.keys())
        if keys and all(isinstance(k, int) for k in keys):
            return [_from_lua(v[k]) for k in sorted(keys)]
        return {k: _from_lua(v[k]) for k in keys}
    return v
