"""KSR.htable, $sht, autoexpire on the server timer (mock clock), events and htable.* RPC."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ksr.core.config import ConfigError
from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import make_config, running_server, write_script

TABLES = {
    "htable": {"htable": ["ipban=>size=8;autoexpire=300;", "cnt=>size=4;", "dflt=>initval=0;"]}
}


@pytest.mark.parametrize("lang", LANGS)
def test_sht_functions(lang: str, tmp_path: Path) -> None:
    s = server_with(["htable"], TABLES)
    got = run_exprs(
        s,
        lang,
        [
            "KSR.htable.sht_is_null('cnt', 'k')",
            "KSR.htable.sht_inc('cnt', 'k')",
            "KSR.htable.sht_is_null('cnt', 'k')",
            "KSR.htable.sht_seti('cnt', 'k', 10)",
            "KSR.htable.sht_inc('cnt', 'k')",
            "KSR.htable.sht_dec('cnt', 'k')",
            "KSR.htable.sht_is_null('cnt', 'k')",
            "KSR.htable.sht_get('cnt', 'k')",
            "KSR.htable.sht_sets('cnt', 's', 'text')",
            "KSR.htable.sht_inc('cnt', 's')",
            "KSR.htable.sht_get('cnt', 'none')",
            "KSR.htable.sht_gete('cnt', 'none')",
            "KSR.htable.sht_getw('cnt', 'none')",
            "KSR.htable.sht_get('dflt', 'none')",
            "KSR.htable.sht_sets('nosuchtable', 'k', 'v')",
            "KSR.htable.sht_cn('cnt', 'sw', '')",
            "KSR.htable.sht_match_name('cnt', 'eq', 's')",
            "KSR.htable.sht_match_str_value('cnt', 're', '^te')",
            "KSR.htable.sht_rm_name_re('cnt', '^s$')",
            "KSR.htable.sht_get('cnt', 's')",
            "KSR.pv.sets('$sht(cnt=>p)', 'pv')",
            "KSR.htable.sht_get('cnt', 'p')",
            "KSR.pv.unset('$sht(cnt=>p)')",
            "KSR.pv.get('$sht(cnt=>p)')",
            "KSR.htable.sht_rm('cnt', 'never')",
            "KSR.htable.sht_reset('cnt')",
            "KSR.htable.sht_get('cnt', 'k')",
        ],
        tmp_path,
    )
    assert got == [
        1,
        -255,
        1,
        1,
        11,
        10,
        -1,
        10,
        1,
        -255,
        None,
        "",
        "<null>",
        0,
        -1,
        2,
        1,
        1,
        1,
        None,
        True,
        "pv",
        True,
        None,
        1,
        0,
        None,
    ]


@pytest.mark.parametrize("lang", LANGS)
def test_iterators(lang: str, tmp_path: Path) -> None:
    s = server_with(["htable"], TABLES)
    for k in ("a", "b", "c"):
        s.modules["htable"].tables["cnt"].set(k, 1)
    got = run_exprs(
        s,
        lang,
        [
            "KSR.htable.sht_iterator_start('it', 'cnt')",
            "KSR.htable.sht_iterator_next('it')",
            "KSR.pv.get('$shtitkey(it)')",
            "KSR.htable.sht_iterator_seti('it', 5)",
            "KSR.htable.sht_iterator_next('it')",
            "KSR.htable.sht_iterator_rm('it')",
            "KSR.htable.sht_iterator_next('it')",
            "KSR.htable.sht_iterator_next('it')",
            "KSR.htable.sht_iterator_end('it')",
            "KSR.htable.sht_get('cnt', 'a')",
            "KSR.htable.sht_is_null('cnt', 'b')",
        ],
        tmp_path,
    )
    assert got == [1, 1, "a", 1, 1, 1, 1, -1, 1, 5, 1]


LUA_EVENTS = """
function ksr_request_route() end
function ht_event(evname)
  local n = KSR.pv.get("$shv(events)") + 1
  KSR.pv.seti("$shv(events)", n)
  KSR.pv.sets("$shv(ev" .. n .. ")", evname .. "/" .. KSR.pv.getw("$shtrecord(key)"))
end
"""


async def test_autoexpire_and_events(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = make_config(
        ["sl", "htable"],
        {
            "htable": {
                "htable": ["ipban=>size=8;autoexpire=300;", "keep=>size=2;"],
                "event_callback": "ht_event",
                "timer_interval": 10,
            }
        },
    )
    async with running_server(cfg, write_script(tmp_path, LUA_EVENTS)) as server:
        assert server.shared_vars["ev1"] == "htable:mod-init/<null>"
        ctx = context(server)
        ctx.src_ip = "192.0.2.66"
        assert server.pv.set(ctx, "$sht(ipban=>$si)", 1)
        server.pv.set(ctx, "$sht(keep=>x)", "v")
        await trio.sleep(200)
        assert server.pv.get(ctx, "$sht(ipban=>192.0.2.66)") == 1
        assert 90 <= int(server.pv.get(ctx, "$shtex(ipban=>192.0.2.66)") or 0) <= 100
        await trio.sleep(150)
        assert server.pv.get(ctx, "$sht(ipban=>192.0.2.66)") is None
        assert server.shared_vars["events"] == 2
        assert server.shared_vars["ev2"] == "htable:expired:ipban/192.0.2.66"
        assert server.pv.get(ctx, "$sht(keep=>x)") == "v"


def test_rpc() -> None:
    s = server_with(["htable"], TABLES)
    call = s.rpc.call
    assert call("htable.seti", ["cnt", "a", "5"]) == "Ok. Key set to new value."
    assert call("htable.sets", ["cnt", "b", "x"]) == "Ok. Key set to new value."
    assert call("htable.get", ["cnt", "a"]) == {"item": {"name": "a", "value": 5}}
    dump = call("htable.dump", ["cnt"])
    items = sorted((i["name"], i["value"]) for slot in dump for i in slot["slot"])
    assert items == [("a", 5), ("b", "x")]
    assert call("htable.delete", ["cnt", "a"]) == "Ok. Key deleted."
    err = s.rpc.handle({"jsonrpc": "2.0", "method": "htable.get", "params": ["cnt", "a"], "id": 1})
    assert err is not None
    assert err["error"]["code"] == 500
    err = s.rpc.handle({"jsonrpc": "2.0", "method": "htable.reload", "params": ["cnt"], "id": 2})
    assert err is not None
    assert "error" in err
    assert [t["name"] for t in call("htable.listTables", [])] == ["ipban", "cnt", "dflt"]


def test_bad_definition_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="htable"):
        server_with(["htable"], {"htable": {"htable": ["broken-without-arrow"]}})
