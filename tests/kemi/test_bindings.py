"""Kamailio's argument coercion and return rules, in the real Lua and Python engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.core.context import MsgContext
from ksr.sip.message import parse_message_untrusted
from tests.kemi.scriptkit import context, run_exprs, server_with
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script


def test_lua_coercion(tmp_path: Path) -> None:
    s = server_with(["textops", "kemix", "htable"], {"htable": {"htable": ["t=>size=2;"]}})
    got = run_exprs(
        s,
        "lua",
        [
            "KSR.textops.cmp_str(5, '5')",  # numbers accepted for str params
            "KSR.textops.cmp_str(2.5, '2.5')",
            "KSR.setflag('3')",  # int params via tointeger
            "KSR.isflagset(3)",
            "KSR.setflag('abc')",  # non-numeric -> 0
            "KSR.isflagset(0)",
            "KSR.setflag(4.0)",
            "KSR.isflagset(4)",
            "KSR.textops.cmp_str('a')",  # too few -> false
            "KSR.is_INVITE(1)",  # zero-param function with args -> false
            "KSR.textops.cmp_str('a', 'a', 'extra')",  # surplus ignored
            "KSR.textops.cmp_str(nil, 'a')",
            "KSR.info('text')",  # "none" functions give false in Lua
            "KSR.is_INVITE()",  # BOOL -> boolean
            "KSR.htable.sht_seti('t', 'k', 3)",  # INT -> number
            "KSR.pv.get('$null')",  # XVAL null -> nil
            "KSR.htable.sht_get('t', 'k')",
            "KSR.kx.get_def('NOPE')",
        ],
        tmp_path,
    )
    assert got == [
        1,
        1,
        True,
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        1,
        False,
        False,
        True,
        1,
        None,
        3,
        None,
    ]


def test_python_coercion(tmp_path: Path) -> None:
    s = server_with(["textops", "htable"], {"htable": {"htable": ["t=>size=2;"]}})
    got = run_exprs(
        s,
        "python",
        [
            "KSR.textops.cmp_str(5, '5')",  # str params must be str
            "KSR.setflag('3')",  # int params must be int
            "KSR.setflag(True)",  # ... or bool
            "KSR.isflagset(1)",
            "KSR.textops.cmp_str('a')",
            "KSR.is_INVITE(1)",  # extra args ignored in Python
            "KSR.info('text')",  # "none" functions give 0 in Python
            "KSR.is_INVITE()",
            "KSR.htable.sht_seti('t', 'k', 3)",
            "KSR.pv.get('$null')",
        ],
        tmp_path,
    )
    assert got == [False, False, True, True, False, True, 0, True, 1, None]
    assert type(got[7]) is bool
    assert type(got[8]) is int


@pytest.mark.parametrize("lang", ["lua", "python"])
def test_xval_lists_and_dicts(lang: str, tmp_path: Path) -> None:
    s = server_with(["pv"])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pvx.xavp_params_explode('a=1;b=x', 'p')",
            "KSR.pvx.xavp_get_keys('p', 0)",
            "KSR.pvx.xavp_getd_p1('p', 0)",
        ],
        tmp_path,
    )
    assert got == [1, ["a", "b"], {"a": ["1"], "b": ["x"]}]


LUA_EXIT = """
function deep(n)
  if n == 0 then KSR.x.exit() end
  deep(n - 1)
end
function ksr_request_route()
  KSR.pv.sets("$var(step)", "before")
  deep(5)
  KSR.pv.sets("$var(step)", "after")
end
function dropper()
  KSR.x.drop()
  KSR.pv.sets("$var(step)", "not here")
end
function missing()
  KSR.pv.sets("$var(miss)", type(KSR.nosuchmodule))
  KSR.nosuchmodule.f()
end
"""

PY_EXIT = """
import sys
import KSR

class H:
    def ksr_request_route(self, msg):
        KSR.pv.sets("$var(step)", "before")
        sys.exit()
        KSR.pv.sets("$var(step)", "after")

    def missing(self, msg):
        KSR.pv.sets("$var(miss)", str(hasattr(KSR, "nosuchmodule")))
        KSR.nosuchmodule.f()

def mod_init():
    return H()
"""


def test_lua_exit_unwinds_and_drop(tmp_path: Path) -> None:
    s = server_with([])
    s.load_script(write_script(tmp_path, LUA_EXIT))
    ctx = context(s)
    assert s.run_route(ctx, "ksr_request_route") == 1
    assert s.script_vars["step"] == "before"
    ctx = context(s)
    assert s.run_route(ctx, "dropper") == 1
    assert ctx.drop is True
    assert s.script_vars["step"] == "before"
    # a missing sub-module is nil: calling into it fails that run only
    assert s.run_route(context(s), "missing") == 0
    assert s.script_vars["miss"] == "nil"


def test_python_sys_exit_and_missing_submodule(tmp_path: Path) -> None:
    s = server_with([])
    s.load_script(write_script(tmp_path, PY_EXIT, ".py"))
    assert s.run_route(context(s), "ksr_request_route") == 1
    assert s.script_vars["step"] == "before"
    assert s.run_route(context(s), "missing") == 0  # AttributeError
    assert s.script_vars["miss"] == "False"


LUA_BAD = """
function ksr_request_route()
  KSR.nosuch.f()
end
"""


async def test_failed_route_costs_one_message(tmp_path: Path) -> None:
    script = write_script(tmp_path, LUA_BAD)
    async with running_server(make_config(["sl"]), script) as server:
        peer = await UdpPeer().bind()
        await peer.send(sip_request("OPTIONS", port=peer.port), udp_addr(server))
        rpl = await peer.recv_reply()
        assert rpl.status == 500
        await peer.send(
            sip_request("OPTIONS", port=peer.port, branch="z9hG4bK-2"), udp_addr(server)
        )
        assert (await peer.recv_reply()).status == 500
        peer.close()


@pytest.mark.parametrize("lang", ["lua", "python"])
def test_route_types_warn_and_keep_the_return_code(
    tmp_path: Path, lang: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A function declared for some routes (@kemi(routes=...)) runs elsewhere too, as in
    Kamailio's KEMI, with its own return code; a warning names the function and the route."""
    s = server_with(["tm", "tmx", "rr"])
    exprs = ["KSR.tmx.t_cancel_branches('all')", "KSR.rr.loose_route()"]
    ctx = context(s)
    ctx.route = "branch"  # neither is meant for a branch route
    with caplog.at_level("WARNING", logger="ksr.script"):
        got = run_exprs(s, lang, exprs, tmp_path, ctx)
    assert got == [-1, -1]  # what they answer anywhere without a transaction / Route header
    text = caplog.text
    assert "KSR.tmx.t_cancel_branches called in a branch route" in text
    assert "meant for TM_ONREPLY_ROUTE only" in text
    assert "KSR.rr.loose_route called in a branch route" in text
    caplog.clear()
    ctx.route = "request"
    with caplog.at_level("WARNING", logger="ksr.script"):
        run_exprs(s, lang, ["KSR.rr.loose_route()"], tmp_path, ctx)
    assert "called in a" not in caplog.text


@pytest.mark.parametrize(("db_mode", "wrapped"), [(0, "userdata"), (1, "function")])
def test_calls_that_cannot_wait_are_plain_calls_in_lua(
    tmp_path: Path, db_mode: int, wrapped: str
) -> None:
    """registrar's KSR functions may wait only on usrloc's database (Module.may_wait): with
    db_mode 0 Lua calls the Python function itself, else through the wrapper that yields
    while the call waits; either way the call answers the same."""
    url = f"sqlite:///{tmp_path / 'loc.sqlite'}"
    s = server_with(["usrloc", "registrar"], {"usrloc": {"db_mode": db_mode, "db_url": url}})
    got = run_exprs(
        s, "lua", ["type(KSR.registrar.save)", "KSR.registrar.lookup('location')"], tmp_path
    )
    assert got == [wrapped, -1]  # nobody registered: lookup finds no contact


@pytest.mark.parametrize("lang", ["lua", "python"])
def test_method_tests_read_a_reply_by_its_cseq(lang: str, tmp_path: Path) -> None:
    s = server_with([])
    exprs = ["KSR.is_INVITE()", "KSR.is_BYE()", "KSR.is_method_in('I')"]
    assert run_exprs(s, lang, exprs, tmp_path) == [True, False, True]
    reply = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-r1\r\n"
        b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: r1\r\n"
        b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    ctx = MsgContext(s, parse_message_untrusted(reply), "127.0.0.1", 5090, s.listeners[0])
    got = run_exprs(s, lang, exprs, tmp_path, ctx=ctx)
    assert got == [False, True, False]


PY_FOREIGN = """
import KSR

class H:
    def ksr_request_route(self, msg):
        raise KeyboardInterrupt()

    def ev(self, msg, evname):
        KSR.pv.sets("$var(ev)", evname)

def mod_init():
    return H()
"""


def test_python_route_lets_exceptions_not_its_own_through(tmp_path: Path) -> None:
    s = server_with([])
    s.load_script(write_script(tmp_path, PY_FOREIGN, ".py"))
    ctx = context(s)
    with pytest.raises(KeyboardInterrupt):
        s.run_route(ctx, "ksr_request_route")
    assert s.engine is not None
    assert s.engine.ctx is None  # no current message left behind
    assert s.run_route(ctx, "ev", "dialog:start") == 1  # an event callback's one argument
    assert s.script_vars["ev"] == "dialog:start"


@pytest.mark.parametrize("lang", ["lua", "python"])
def test_arguments_past_the_parameters_are_ignored(tmp_path: Path, lang: str) -> None:
    """A binding takes up to eight arguments whatever its function's parameters (compiled
    with a fixed signature): those past the parameters are ignored, as before."""
    s = server_with(["textops"])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.setflag(5, 0, 0, 0, 0, 0, 0, 0)",
            "KSR.isflagset(5, 1)",
            "KSR.textops.cmp_str('a', 'a', 'b', 'c', 'd', 'e', 'f', 'g')",
            "KSR.is_INVITE()",
        ],
        tmp_path,
    )
    assert got == [True, True, 1, True]
