"""KSR.dialog functions, $dlg/$dlg_ctx/$dlg_var and profiles, called from a Python script on
calls through a real ksr; and the RPC reply shapes against Kamailio's captures."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import (
    CAPTURES,
    make_config,
    needs_captures,
    running_server,
    udp_addr,
    write_script,
)

from .test_calls import cid, establish
from .ua import Ua

PY = """
import KSR

class H:
    def ksr_request_route(self, msg):
        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        if not KSR.is_ACK() and KSR.tm.t_check_trans() == 0:
            return 1
        if KSR.pv.get("$tt") is not None:
            KSR.pv.sets("$shv(indlg_known)", str(KSR.dialog.is_known_dlg()))
            KSR.pv.sets("$shv(indlg_inprof)", str(KSR.dialog.is_in_profile("caller", "alice")))
            KSR.tm.t_relay()
            return 1
        KSR.hdr.insert("Record-Route: <sip:" + KSR.pv.get("$Ri") + ":" + str(KSR.pv.get("$Rp")) + ";lr>\\r\\n")
        if KSR.dialog.get_profile_size("caller", KSR.pv.get("$fU"), "$var(n)") > 0 and KSR.pv.get("$var(n)") >= 1:
            KSR.sl.sl_send_reply(403, "Too Many Calls")
            return 1
        KSR.pv.sets("$dlg_var(before)", "set-before-manage")
        KSR.pv.seti("$dlg_ctx(timeout)", 3600)
        KSR.dialog.dlg_manage()
        KSR.dialog.set_dlg_profile("caller", KSR.pv.get("$fU"))
        KSR.dialog.dlg_setflag(3)
        KSR.pv.sets("$shv(flag3)", str(KSR.dialog.dlg_isflagset(3)))
        KSR.pv.sets("$shv(flag4)", str(KSR.dialog.dlg_isflagset(4)))
        KSR.pv.sets("$shv(undef_profile)", str(KSR.dialog.is_in_profile_static("nope")))
        KSR.dialog.var_sets("x", "1")
        KSR.dialog.var_rm("x")
        KSR.pv.sets("$shv(x_null)", str(KSR.dialog.var_is_null("x")))
        KSR.pv.sets("$shv(gete)", "[" + KSR.dialog.var_gete("x") + "]" + KSR.dialog.var_getw("x"))
        KSR.tm.t_relay()
        return 1

    def ksr_dialog_event(self, msg, evname):
        KSR.pv.sets("$shv(ev_" + evname + ")", "%s|%s|%s|%s" % (
            KSR.pv.get("$dlg(callid)"), KSR.pv.get("$dlg_var(before)"),
            KSR.pv.get("$dlg(state)"), KSR.pv.get("$dlg_ctx(timeout)")))

def mod_init():
    return H()
"""


async def test_kemi_and_pvs_from_python(tmp_path: Path) -> None:
    cfg = make_config(
        ["sl", "tm", "dialog"],
        {"dialog": {"event_callback": "ksr_dialog_event", "profiles_with_value": "caller"}},
    )
    script = write_script(tmp_path, PY, ".py")
    async with running_server(cfg, script) as server:
        a, b, c = await Ua("alice").start(), await Ua("bob").start(), await Ua("alice").start()
        try:
            proxy = udp_addr(server)
            call_id = cid()
            await establish(a, b, proxy, call_id)
            sv = server.shared_vars
            assert sv["flag3"] == "1"
            assert sv["flag4"] == "-1"
            assert sv["undef_profile"] == "-1"
            assert sv["x_null"] == "1"
            assert sv["gete"] == "[]<null>"
            assert sv["ev_dialog:start"] == f"{call_id}|set-before-manage|3|3600"
            assert server.rpc.call("dlg.profile_get_size", ["caller", "alice"]) == 1
            assert server.rpc.call("dlg.profile_get_size", ["caller"]) == 1
            # a second call from alice is refused by the profile limit: no dialog for it
            await c.invite_via(proxy, b, cid())
            await c.expect_reply(403)
            assert server.stats.value("dialog", "processed_dialogs") == 1
            (d,) = server.rpc.call("dlg.profile_list", ["caller", "alice"])
            assert d["call-id"] == call_id
            assert d["lifetime"] == 3600
            assert d["variables"] == [{"before": "set-before-manage"}]
            await a.in_dialog("BYE", proxy)
            await b.expect_request("BYE")
            assert sv["indlg_known"] == "1"
            assert sv["indlg_inprof"] == "-1"  # the BYE already took it out (as Kamailio)
            assert sv["ev_dialog:end"].startswith(f"{call_id}|set-before-manage|5|")
            assert server.rpc.call("dlg.profile_get_size", ["caller"]) == 0
        finally:
            for u in (a, b, c):
                u.close()


@needs_captures
async def test_rpc_shapes_match_kamailio(tmp_path: Path) -> None:
    from .conftest import proxy_config

    cfg, script = proxy_config(tmp_path)
    async with running_server(cfg, script) as server:
        a, b = await Ua("alice").start(), await Ua("bob").start()
        try:
            await establish(a, b, udp_addr(server), cid())
            cap = json.loads((CAPTURES / "kamcli-10-dlg.list-active-call.json").read_text())
            want = cap["response_json"]["result"][0]
            (got,) = server.rpc.call("dlg.list", [])
            assert list(got) == list(want)
            assert list(got["caller"]) == list(want["caller"])
            for k, v in want.items():
                assert type(got[k]) is type(v), k
            cap = json.loads((CAPTURES / "http-dlg.stats_active.json").read_text())
            assert list(server.rpc.call("dlg.stats_active", [])) == list(
                cap["response_json"]["result"]
            )
            stats = server.rpc.call("stats.get_statistics", ["dialog:"])
            cap = json.loads(
                (CAPTURES / "kamcli-11-stats.get_statistics-group-dialog.json").read_text()
            )
            assert stats == cap["response_json"]["result"]  # same names, same values for one call
            resp = server.rpc.handle(
                {"jsonrpc": "2.0", "method": "dlg.profile_get_size", "params": ["x"], "id": 1}
            )
            assert resp is not None
            assert resp["error"] == {"code": 404, "message": "Profile not found: x"}
            (brief,) = server.rpc.call("dlg.briefing", [])
            assert set(brief) == {"from_uri", "to_uri", "call-id", "from_tag", "to_tag"}
        finally:
            a.close()
            b.close()
