"""Pseudo-variables through KSR.pv in both engines: types, indices, nested PVs, lumps, transformations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import sip_request

MSG = sip_request(
    "INVITE",
    ruri="sip:bob@example.com",
    extra="Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK-second\nX-A: one\nX-A: two\nX-A: three\n"
    "User-Agent: tester/1.0",
    body="v=0\r\n",
)


@pytest.mark.parametrize("lang", LANGS)
def test_types_follow_kamailio(lang: str, tmp_path: Path) -> None:
    s = server_with([])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pv.get('$rp')",
            "KSR.pv.get('$cs')",
            "KSR.pv.get('$sp')",
            "KSR.pv.get('$ml') > 100",
            "KSR.pv.get('$cl')",
            "KSR.pv.get('$mt')",
            "KSR.pv.get('$rU')",
            "KSR.pv.get('$rd')",
            "KSR.pv.get('$rm')",
            "KSR.pv.get('$rs')",
            "KSR.pv.get('$ua')",
            "KSR.pv.get('$tt')",
            "KSR.pv.get('$ft')",
            "KSR.pv.get('$si')",
            "KSR.pv.get('$var(never)')",
            "KSR.pv.is_null('$var(never)')",
            "KSR.pv.is_null('$nosuchpv')",
            "KSR.pv.get('$nosuchpv')",
            "KSR.pv.gete('$avp(none)')",
            "KSR.pv.getw('$avp(none)')",
            "KSR.pv.geti('$cs')",
            "KSR.pv.getvs('$avp(none)', 'dflt')",
            "KSR.pv.getvn('$avp(none)', 42)",
        ],
        tmp_path,
        context(s, MSG),
    )
    assert got == [
        "5060",
        "1",
        5090,
        True,
        5,
        1,
        "bob",
        "example.com",
        "INVITE",
        None,
        "tester/1.0",
        None,
        "fromtag-test-call-1",
        "127.0.0.1",
        0,
        False,
        True,
        None,
        "",
        "<null>",
        1,
        "dflt",
        42,
    ]


@pytest.mark.parametrize("lang", LANGS)
def test_header_indices_and_counts(lang: str, tmp_path: Path) -> None:
    s = server_with([])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pv.get('$hdr(X-A)')",
            "KSR.pv.get('$(hdr(X-A)[1])')",
            "KSR.pv.get('$(hdr(X-A)[-1])')",
            "KSR.pv.get('$(hdr(X-A)[*])')",
            "KSR.pv.get('$(hdr(X-A)[7])')",
            "KSR.pv.get('$hdrc(X-A)')",
            "KSR.pv.get('$hdrc(Via)')",
            "KSR.pv.get('$(hdr(Via)[1])')",
            "KSR.pv.get('$hdrc(X-None)')",
        ],
        tmp_path,
        context(s, MSG),
    )
    assert got == [
        "one",
        "two",
        "three",
        "one,two,three",
        None,
        3,
        2,
        "SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK-second",
        0,
    ]


@pytest.mark.parametrize("lang", LANGS)
def test_avp_stack_and_var(lang: str, tmp_path: Path) -> None:
    s = server_with([])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pv.seti('$avp(x)', 1)",
            "KSR.pv.sets('$avp(x)', 'two')",
            "KSR.pv.seti('$avp(x)', 3)",
            "KSR.pv.get('$avp(x)')",
            "KSR.pv.get('$(avp(x)[1])')",
            "KSR.pv.get('$(avp(x)[-1])')",
            "KSR.pv.get('$(avp(x)[*])')",
            "KSR.pv.unset('$avp(x)')",
            "KSR.pv.get('$avp(x)')",
            "KSR.pv.get('$avp(s:x)')",
            "KSR.pv.sets('$var(v)', 'abc')",
            "KSR.pv.get('$var(v)')",
            "KSR.pv.unset('$var(v)')",
            "KSR.pv.get('$var(v)')",
            "KSR.pv.is_null('$var(v)')",
            "KSR.pv.seti('$shv(counter)', 5)",
            "KSR.pv.get('$shv(counter)')",
            "KSR.pv.sets('$rs', '200')",
            "KSR.pv.seti('$nosuch', 1)",
        ],
        tmp_path,
    )
    assert got == [
        True,
        True,
        True,
        3,
        "two",
        1,
        "3,two,1",
        True,
        "two",
        "two",
        True,
        "abc",
        True,
        0,
        False,
        True,
        5,
        False,
        False,
    ]


@pytest.mark.parametrize("lang", LANGS)
def test_writes_ruri_visible_from_lumped(lang: str, tmp_path: Path) -> None:
    s = server_with([])
    ctx = context(s, MSG)
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pv.sets('$fU', 'mallory')",
            "KSR.pv.get('$fU')",
            "KSR.pv.sets('$rU', 'carol')",
            "KSR.pv.get('$ru')",
            "KSR.pv.sets('$rp', '5080')",
            "KSR.pv.get('$rp')",
            "KSR.pv.get('$ou')",
            "KSR.pv.sets('$du', 'sip:10.1.1.1:5099')",
            "KSR.pv.get('$dd')",
            "KSR.pv.get('$dp')",
            "KSR.pv.unset('$du')",
            "KSR.pv.get('$du')",
        ],
        tmp_path,
        ctx,
    )
    assert got == [
        True,
        "alice",
        True,
        "sip:carol@example.com",
        True,
        "5080",
        "sip:bob@example.com",
        True,
        "10.1.1.1",
        "5099",
        True,
        None,
    ]
    # the From change is applied when the message goes out
    assert ctx.apply_lumps().from_.uri.user == "mallory"


@pytest.mark.parametrize("lang", LANGS)
def test_nested_pv_in_class_argument(lang: str, tmp_path: Path) -> None:
    s = server_with(["htable"], {"htable": {"htable": ["ipban=>size=4;"]}})
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pv.seti('$sht(ipban=>$si)', 7)",
            "KSR.htable.sht_get('ipban', '127.0.0.1')",
            "KSR.pv.get('$sht(ipban=>$si)')",
            "KSR.pv.sets('$var(k)', 'X-A')",
            "KSR.pv.get('$hdr($var(k))')",
            "KSR.pv.seti('$var(i)', 2)",
            "KSR.pv.get('$(hdr(X-A)[$var(i)])')",
        ],
        tmp_path,
        context(s, MSG),
    )
    assert got == [True, 7, 7, True, "one", True, "three"]


@pytest.mark.parametrize("lang", LANGS)
def test_transformations(lang: str, tmp_path: Path) -> None:
    s = server_with([])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pv.get('$(ru{uri.user})')",
            "KSR.pv.get('$(ru{uri.host}{s.toupper})')",
            "KSR.pv.get('$(ua{s.len})')",
            "KSR.pv.get('$(ua{s.substr,0,6})')",
            "KSR.pv.get('$(ua{s.select,0,/})')",
            "KSR.pv.get('$(hdr(From){tobody.user})')",
            "KSR.pv.get('$(cs{s.int})')",
            "KSR.pv.get('$(ru{s.nosuchtr})')",
            "KSR.pv.get('$(hdr(X-A)[-1]{s.len})')",
            "KSR.pv.sets('$(ru{uri.user})', 'x')",
        ],
        tmp_path,
        context(s, MSG),
    )
    assert got == ["bob", "EXAMPLE.COM", 10, "tester", "tester", "alice", 1, None, 5, False]


def test_expand_format_strings() -> None:
    s = server_with([])
    ctx = context(s, MSG)
    text = s.pv.expand(ctx, "$rm $(ru{uri.user}) from $si:$sp [$hdr(X-A)] $var(none) $nosuch $ 5$")
    assert text == "INVITE bob from 127.0.0.1:5090 [one] 0 $nosuch $ 5$"
    assert s.pv.expand(ctx, "null=$avp(none)") == "null=<null>"
