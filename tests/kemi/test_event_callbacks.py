"""Event callbacks: a module asks whether the script defines one before it builds the event's
context (``Scripts.has_callback``), once per loaded script version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ksr.modules.dialog.model import Dialog
from ksr.sip.dialog_state import DlgInput
from tests.kemi.scriptkit import context, server_with

LUA_WITH = """
EVENTS = {}
function ksr_request_route() return 1 end
function ksr_dialog_event(evname) EVENTS[#EVENTS + 1] = type(evname) .. ":" .. evname end
"""
LUA_WITHOUT = "function ksr_request_route() return 1 end\n"
PY_WITH = """
EVENTS = []
class H:
    def ksr_request_route(self, msg):
        return 1
    def ksr_dialog_event(self, msg, evname):
        EVENTS.append(evname)
def mod_init():
    return H()
"""
PY_WITHOUT = """
class H:
    def ksr_request_route(self, msg):
        return 1
def mod_init():
    return H()
"""
SCRIPTS = {
    ("lua", True): LUA_WITH,
    ("lua", False): LUA_WITHOUT,
    ("python", True): PY_WITH,
    ("python", False): PY_WITHOUT,
}


def _server(tmp_path: Path, lang: str, with_cb: bool) -> Any:
    server = server_with(["tm", "dialog"], {"dialog": {"event_callback": "ksr_dialog_event"}})
    path = tmp_path / ("s.lua" if lang == "lua" else "s.py")
    path.write_text(SCRIPTS[(lang, with_cb)])
    server.load_script(path)
    return server


@pytest.mark.parametrize("lang", ["lua", "python"])
def test_answer_kept_per_version(tmp_path: Path, lang: str) -> None:
    server = _server(tmp_path, lang, False)
    eng = server.engine
    assert server.has_callback("ksr_dialog_event") is False
    assert eng.callbacks == {"ksr_dialog_event": False}
    assert server.has_callback("ksr_request_route") is True
    assert server.has_callback("") is False
    assert server.has_callback("none") is False
    # a reload is a new engine: it answers for its own script
    path = server.script_path
    path.write_text(SCRIPTS[(lang, True)])
    server.load_script(path)
    assert server.engine is not eng
    assert server.has_callback("ksr_dialog_event") is True
    assert eng.callbacks["ksr_dialog_event"] is False  # the old version keeps its answer


@pytest.mark.parametrize("lang", ["lua", "python"])
@pytest.mark.parametrize("with_cb", [True, False])
def test_dialog_event_only_when_defined(tmp_path: Path, lang: str, with_cb: bool) -> None:
    server = _server(tmp_path, lang, with_cb)
    runs: list[tuple[str, str]] = []
    real = server.run_event

    def run_event(name: str, evname: str, ctx: Any = None) -> int:
        runs.append((name, evname))
        assert type(evname) is str  # the plain name, not the DlgEvent member
        return real(name, evname, ctx)

    server.run_event = run_event
    mgr = server.module("dialog").mgr
    ctx = context(server)
    dlg = Dialog(1, 1, "c1", "sip:a@x", "sip:b@x", "sip:b@y", "127.0.0.1", 5090, 0.0)
    mgr.apply(dlg, DlgInput.ANSWERED, ctx)  # the INVITE's 2xx: dialog:start
    assert runs == ([("ksr_dialog_event", "dialog:start")] if with_cb else [])
    assert ctx.extra["dlg"] is dlg  # the message's context knows its dialog either way
    if with_cb and lang == "lua":
        assert list(server.engine.lua.globals().EVENTS.values()) == ["string:dialog:start"]
    if with_cb and lang == "python":
        assert server.engine.module.EVENTS == ["dialog:start"]
