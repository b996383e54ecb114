"""KSR functions whose binding calls a module's compiled part (``@kemi(via=...)``): the
module's method stays the reference, and the script gets the same answers from either."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.kemi.registry import KemiFunction
from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import sip_request

MODULES = ["tm", "tmx", "rr", "sanity", "maxfwd"]
VIA = {
    "maxfwd.process_maxfwd",
    "pv.get",
    "tm.t_relay",
    "tm.t_newtran",
    "tm.t_check_trans",
    "tmx.t_precheck_trans",
    "rr.loose_route",
    "rr.record_route",
    "sanity.sanity_check",
}


def _via_functions() -> dict[str, KemiFunction]:
    s = server_with(MODULES)
    return {f"{f.submodule}.{f.name}": f for f in s.registry if f.via is not None}


def test_the_via_functions_call_the_compiled_part() -> None:
    found = _via_functions()
    assert set(found) == VIA
    for f in found.values():
        target = f.target()
        assert target != f.fn  # a bound method is a new object each time: compared by value
        assert callable(target)


def test_a_module_not_set_up_falls_back_to_its_method() -> None:
    f = _via_functions()["tm.t_relay"]
    owner = f.fn.__self__
    relayer = owner.__dict__.pop("relayer")
    try:
        assert f.target() == f.fn
    finally:
        owner.relayer = relayer


ROUTED = "Route: <sip:10.9.9.9;lr>"  # not ours: loose_route routes to it

CASES = [
    # (expression, the module method's call, message)
    ("KSR.sanity.sanity_check(17895, 7)", ("sanity", "sanity_check", 17895, 7), None),
    (
        "KSR.sanity.sanity_check(17895, 7)",
        ("sanity", "sanity_check", 17895, 7),
        sip_request("INVITE").replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
    ),
    ("KSR.maxfwd.process_maxfwd(10)", ("maxfwd", "process_maxfwd", 10), None),
    (
        "KSR.maxfwd.process_maxfwd(10)",
        ("maxfwd", "process_maxfwd", 10),
        sip_request("INVITE").replace("Max-Forwards: 70", "Max-Forwards: 0"),
    ),
    (
        "KSR.maxfwd.process_maxfwd(10)",
        ("maxfwd", "process_maxfwd", 10),
        sip_request("INVITE").replace("Max-Forwards: 70", "Max-Forwards: x"),
    ),
    (
        "KSR.maxfwd.process_maxfwd(10)",
        ("maxfwd", "process_maxfwd", 10),
        sip_request("INVITE").replace("Max-Forwards: 70\r\n", ""),
    ),
    ("KSR.pv.get('$ru')", ("pv", "get", "$ru"), None),
    ("KSR.tm.t_check_trans()", ("tm", "t_check_trans"), None),
    ("KSR.tmx.t_precheck_trans()", ("tmx", "t_precheck_trans"), None),
    ("KSR.rr.loose_route()", ("rr", "loose_route"), None),
    ("KSR.rr.loose_route()", ("rr", "loose_route"), sip_request("BYE", extra=ROUTED)),
    ("KSR.rr.record_route()", ("rr", "record_route"), None),
]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("expr", "call", "text"), CASES)
def test_the_script_gets_the_methods_answer(
    lang: str, expr: str, call: tuple[object, ...], text: str | None, tmp_path: Path
) -> None:
    s = server_with(MODULES, {"sanity": {"noreply": 1}})
    sub, name, *params = call
    f = s.registry.get(str(sub), str(name))
    assert f is not None
    want = f.fn(context(s, text), *params)  # the method, the reference
    ctx = context(s, text)
    assert run_exprs(s, lang, [expr], tmp_path, ctx) == [want]
