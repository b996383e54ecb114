"""Shared pieces of the dialog/acc tests: the routing script and server construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ksr.core.config import Config
from tests.support import make_config, write_script

# A small stateful proxy: record-routes, tracks INVITEs, relays in-dialog requests, counts
# each dialog event in $shv(<evname>) and writes the CDR from the event callback.
LUA_PROXY = """
function ksr_request_route()
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if not KSR.is_ACK() and KSR.tm.t_check_trans() == 0 then return 1 end
  if KSR.pv.get("$tt") ~= nil then
    if KSR.rr and KSR.rr.loose_route then KSR.rr.loose_route() end
    KSR.tm.t_relay()
    return 1
  end
  if KSR.is_INVITE() then
    KSR.hdr.insert("Record-Route: <sip:" .. KSR.pv.get("$Ri") .. ":" .. KSR.pv.get("$Rp") .. ";lr>\\r\\n")
    KSR.dialog.var_sets("account", "acct-" .. KSR.pv.get("$fU"))
    KSR.dialog.dlg_manage()
    KSR.dialog.set_dlg_profile_static("calls")
    if KSR.pv.get("$rU") == "nobody" then
      KSR.sl.sl_send_reply(404, "Not Found")  -- no transaction: never a call
      return 1
    end
  end
  KSR.tm.t_relay()
end

function ksr_dialog_event(evname)
  local k = "$shv(" .. evname .. ")"
  KSR.pv.seti(k, (KSR.pv.get(k) or 0) + 1)
  KSR.pv.sets("$shv(last_callid)", KSR.pv.get("$dlg(callid)") or "none")
  KSR.acc.acc_cdr(evname)
end
"""


def proxy_config(
    tmp: Path,
    dialog: dict[str, Any] | None = None,
    acc: dict[str, Any] | None = None,
    tm: dict[str, Any] | None = None,
) -> tuple[Config, Path]:
    mods = ["sl", "tm", "corex", "dialog", "acc"]
    dp = {"event_callback": "ksr_dialog_event", "profiles_no_value": "calls", **(dialog or {})}
    ap = {
        "db_url": f"jsonl://{tmp / 'cdr.jsonl'}",
        "cdr_extra": "account=$dlg_var(account);fu=$fu",
        **(acc or {}),
    }
    cfg = make_config(mods, {"dialog": dp, "acc": ap, "tm": tm or {}})
    return cfg, write_script(tmp, LUA_PROXY)
