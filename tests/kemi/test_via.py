"""KSR functions whose binding calls a module's compiled part (``@kemi(via=...)``): the
module's method stays the reference, and the script gets the same answers from either."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.kemi.registry import KemiFunction
from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import sip_request

MODULES = ["tm", "tmx", "rr", "sanity", "maxfwd", "usrloc", "registrar", "dialog"]
VIA = {
    "dialog.dlg_manage",
    "registrar.lookup",
    "registrar.save",
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
    ("KSR.dialog.dlg_manage()", ("dialog", "dlg_manage"), None),
    ("KSR.dialog.dlg_manage()", ("dialog", "dlg_manage"), sip_request("BYE", extra=ROUTED)),
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


REGISTRAR = ["usrloc", "registrar"]
REGISTER = sip_request("REGISTER", ruri="sip:127.0.0.1", extra="Expires: 60")


def test_registrar_save_and_lookup_call_the_compiled_part() -> None:
    s = server_with(REGISTRAR)
    for name in ("save", "lookup"):
        f = s.registry.get("registrar", name)
        assert f is not None
        assert f.via is not None
        assert f.target() != f.fn
        assert callable(f.target())


def _bindings(s: object) -> list[tuple[str, str]]:
    ul = s.registry.get("registrar", "save").fn.__self__.usrloc  # type: ignore[attr-defined]
    return [(c.aor, c.contact) for c in ul.domain("location").read("ksr")]


@pytest.mark.parametrize("lang", LANGS)
def test_save_gives_the_methods_answer(lang: str, tmp_path: Path) -> None:
    ref = server_with(REGISTRAR)
    f = ref.registry.get("registrar", "save")
    assert f is not None
    want = f.fn(context(ref, REGISTER), "location", 0)
    s = server_with(REGISTRAR)
    got = run_exprs(s, lang, ['KSR.registrar.save("location", 0)'], tmp_path, context(s, REGISTER))
    assert got == [want]
    assert want == 1
    assert _bindings(s) == _bindings(ref) == [("ksr", "sip:alice@127.0.0.1:5090")]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("ruri", ["sip:ksr@127.0.0.1", "sip:nobody@127.0.0.1"])
def test_lookup_gives_the_methods_answer(lang: str, ruri: str, tmp_path: Path) -> None:
    s = server_with(REGISTRAR)
    save = s.registry.get("registrar", "save")
    lookup = s.registry.get("registrar", "lookup")
    assert save is not None
    assert lookup is not None
    assert save.fn(context(s, REGISTER), "location", 0) == 1
    invite = sip_request("INVITE", ruri=ruri)
    ref = context(s, invite)
    want = lookup.fn(ref, "location")
    ctx = context(s, invite)
    assert run_exprs(s, lang, ['KSR.registrar.lookup("location")'], tmp_path, ctx) == [want]
    assert want == (1 if "ksr@" in ruri else -1)
    assert (ctx.ruri, ctx.dst_uri, ctx.branches) == (ref.ruri, ref.dst_uri, ref.branches)


@pytest.mark.parametrize("lang", LANGS)
def test_lookup_of_a_binding_with_path_routes_through_it(lang: str, tmp_path: Path) -> None:
    """The stored Path becomes the Route set after the Vias of what is sent (RFC 3327 §5.3),
    the same through the method and the script."""
    s = server_with(REGISTRAR, {"registrar": {"use_path": 1}})
    save = s.registry.get("registrar", "save")
    lookup = s.registry.get("registrar", "lookup")
    assert save is not None
    assert lookup is not None
    path = "Path: <sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>\nSupported: path"
    register = sip_request("REGISTER", ruri="sip:127.0.0.1", extra=f"Expires: 60\n{path}")
    assert save.fn(context(s, register), "location", 0) == 1
    invite = sip_request("INVITE", ruri="sip:ksr@127.0.0.1")
    ref = context(s, invite)
    assert lookup.fn(ref, "location") == 1
    ctx = context(s, invite)
    assert run_exprs(s, lang, ['KSR.registrar.lookup("location")'], tmp_path, ctx) == [1]
    sent = [(h.key, h.value) for h in ctx.apply_lumps().headers]
    assert sent == [(h.key, h.value) for h in ref.apply_lumps().headers]
    assert sent[:3] == [
        ("via", "SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-test-1;rport=5090;received=127.0.0.1"),
        ("route", "<sip:edge1.example.com;lr>"),
        ("route", "<sip:edge2.example.com;lr>"),
    ]
    assert ctx.dst_uri == "sip:edge1.example.com;lr"
