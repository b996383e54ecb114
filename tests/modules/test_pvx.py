"""KSR.pvx (module pv) in both engines: $var/$shv/$avp, xavp/xavu/xavi families, evalx, sbranch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with


@pytest.mark.parametrize("lang", LANGS)
def test_vars_avps_evalx(lang: str, tmp_path: Path) -> None:
    s = server_with(["pv"], {"pv": {"shvset": ["limit=i:10"]}})
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pvx.var_seti('n', 5)",
            "KSR.pvx.var_get('n')",
            "KSR.pvx.var_sets('s', 'x')",
            "KSR.pv.get('$var(s)')",
            "KSR.pvx.var_get('never')",
            "KSR.pvx.shv_get('limit')",
            "KSR.pvx.shvinc_get('hits')",
            "KSR.pvx.shvinc_get('hits')",
            "KSR.pv.get('$shvinc(hits)')",
            "KSR.pvx.avp_is_null('a')",
            "KSR.pvx.avp_seti('a', 1)",
            "KSR.pvx.avp_sets('a', 'two')",
            "KSR.pvx.avp_get('a')",
            "KSR.pv.get('$(avp(a)[1])')",
            "KSR.pvx.avp_is_null('a')",
            "KSR.pvx.avp_rm('a')",
            "KSR.pvx.avp_get('a')",
            "KSR.pvx.avp_gete('a')",
            "KSR.pvx.avp_getw('a')",
            "KSR.pvx.avp_rm('a')",
            "KSR.pvx.evalx('$var(e)', '$rm to $rU')",
            "KSR.pv.get('$var(e)')",
        ],
        tmp_path,
    )
    assert got == [
        1,
        5,
        1,
        "x",
        0,
        10,
        1,
        2,
        3,
        1,
        1,
        1,
        "two",
        1,
        -1,
        1,
        None,
        "",
        "<null>",
        -1,
        1,
        "INVITE to ksr",
    ]


@pytest.mark.parametrize("lang", LANGS)
def test_xavp_family(lang: str, tmp_path: Path) -> None:
    s = server_with(["pv"])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pvx.xavp_is_null('r')",
            "KSR.pvx.xavp_seti('r', 7)",
            "KSR.pvx.xavp_get('r')",
            "KSR.pvx.xavp_child_sets('c', 'uri', 'sip:a@x')",
            "KSR.pvx.xavp_child_seti('c', 'q', 5)",
            "KSR.pvx.xavp_child_get('c', 'uri')",
            "KSR.pvx.xavp_child_get('c', 'q')",
            "KSR.pvx.xavp_child_is_null('c', 'nope')",
            "KSR.pvx.xavp_child_getw('c', 'nope')",
            "KSR.pv.get('$xavp(c=>uri)')",
            "KSR.pvx.xavp_get_keys('c', 0)",
            "KSR.pvx.xavp_child_rm('c', 'q')",
            "KSR.pvx.xavp_get_keys('c', 0)",
            "KSR.pv.sets('$xavp(c=>uri)', 'sip:b@x')",
            "KSR.pv.get('$xavp(c=>uri)')",
            "KSR.pv.get('$xavp(c[1]=>uri)')",
            "KSR.pvx.xavp_params_explode('a=1;b=two', 'p')",
            "KSR.pvx.xavp_params_implode('p', '$var(imp)')",
            "KSR.pv.get('$var(imp)')",
            "KSR.pvx.xavp_copy('c', 1, 'copy')",
            "KSR.pv.get('$xavp(copy=>uri)')",
            "KSR.pvx.xavp_rm('c')",
            "KSR.pv.get('$xavp(c=>uri)')",
            "KSR.pvx.xavp_rm_all('c')",
            "KSR.pvx.xavp_is_null('c')",
            "KSR.pvx.xavp_rm('c')",
        ],
        tmp_path,
    )
    assert got == [
        1,
        1,
        7,
        1,
        1,
        "sip:a@x",
        5,
        1,
        "<null>",
        "sip:a@x",
        ["uri", "q"],
        1,
        ["uri"],
        True,
        "sip:b@x",
        "sip:a@x",
        1,
        1,
        "a=1;b=two",
        1,
        "sip:a@x",
        1,
        "sip:a@x",
        1,
        1,
        -1,
    ]


@pytest.mark.parametrize("lang", LANGS)
def test_xavu_xavi(lang: str, tmp_path: Path) -> None:
    s = server_with(["pv"])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pvx.xavu_sets('u', 'one')",
            "KSR.pvx.xavu_sets('u', 'two')",
            "KSR.pvx.xavu_get('u')",
            "KSR.pvx.xavu_child_seti('w', 'n', 1)",
            "KSR.pvx.xavu_child_seti('w', 'n', 2)",
            "KSR.pvx.xavu_child_get('w', 'n')",
            "KSR.pv.get('$xavu(w=>n)')",
            "KSR.pvx.xavu_params_explode('k=v;z=9', 'pu')",
            "KSR.pvx.xavu_params_implode('pu', '$var(pi)')",
            "KSR.pv.get('$var(pi)')",
            "KSR.pvx.xavi_child_sets('Hdr', 'Name', 'v')",
            "KSR.pvx.xavi_child_get('HDR', 'name')",
            "KSR.pv.get('$xavi(hdr=>NAME)')",
            "KSR.pvx.xavi_is_null('hDr')",
        ],
        tmp_path,
    )
    assert got == [1, 1, "two", 1, 1, 2, 2, 1, 1, "k=v;z=9", 1, "v", "v", -1]


@pytest.mark.parametrize("lang", LANGS)
def test_sbranch_and_var_xavp_copy(lang: str, tmp_path: Path) -> None:
    s = server_with(["pv"])
    ctx = context(s)
    got = run_exprs(
        s,
        lang,
        [
            "KSR.pv.sets('$sbranch(uri)', 'sip:gw@192.0.2.1')",
            "KSR.pvx.sbranch_append()",
            "KSR.pvx.sbranch_set_ruri()",
            "KSR.pv.get('$ru')",
            "KSR.pvx.sbranch_reset()",
            "KSR.pvx.sbranch_append()",
            "KSR.pvx.var_sets('vx', 'vv')",
            "KSR.pvx.pv_var_to_xavp('vx', 'vars')",
            "KSR.pv.get('$xavp(vars=>vx)')",
            "KSR.pvx.xavp_slist_explode('a, b,c', ',', 't', 'sl')",
            "KSR.pv.get('$xavp(sl=>v)')",
            "KSR.pv.get('$xavp(sl[2]=>v)')",
        ],
        tmp_path,
        ctx,
    )
    assert got == [True, 1, 1, "sip:gw@192.0.2.1", 1, -1, 1, 1, "vv", 1, "a", "c"]
    assert [b.uri for b in ctx.branches] == ["sip:gw@192.0.2.1"]
