-- ksr default routing script (Lua). scripts/default.py holds the same logic in Python:
-- keep the two in step.
--
-- A production-style proxy and registrar: request sanity, OPTIONS keepalive, NAT handling,
-- retransmission absorption, in-dialog routing by Route headers, optional digest
-- authentication ([core.defines] WITH_AUTH = 1), registrations into the location table,
-- calls to registered users with dialog tracking, and call detail records from dialog events.
-- Lua's os.exit() would stop the server: use KSR.x.exit() to end a route.

FLT_ACC = 1
FLT_ACCMISSED = 2
FLT_ACCFAILED = 3
FLT_NATS = 5
FLB_NATB = 6
FLB_NATSIPPING = 7

-- Request route: every SIP request enters here.
function ksr_request_route()
  ksr_route_reqinit()
  ksr_route_natdetect()

  -- CANCEL: relay it to the branches of its INVITE, absorb it otherwise
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then
      ksr_route_relay()
    end
    return 1
  end

  -- retransmissions are absorbed by their transaction
  if not KSR.is_ACK() then
    if KSR.tmx.t_precheck_trans() > 0 then
      KSR.tm.t_check_trans()
      return 1
    end
    if KSR.tm.t_check_trans() == 0 then
      return 1
    end
  end

  ksr_route_withindlg()
  ksr_route_auth()

  -- initial requests: drop preloaded Route headers, record-route dialog-forming requests
  KSR.hdr.remove("Route")
  if KSR.is_method_in("IS") then
    KSR.rr.record_route()
  end
  if KSR.is_INVITE() then
    KSR.setflag(FLT_ACC)
    if KSR.dialog then
      KSR.dialog.dlg_manage()
    end
  end

  ksr_route_sipout()
  ksr_route_registrar()

  if KSR.corex.has_ruri_user() < 0 then
    KSR.sl.sl_send_reply(484, "Address Incomplete")
    KSR.x.exit()
  end
  ksr_route_location()
  return 1
end

-- Stateful relay with branch, reply and failure callbacks.
function ksr_route_relay()
  if KSR.is_method_in("IBSU") and KSR.tm.t_is_set("branch_route") < 0 then
    KSR.tm.t_on_branch("ksr_branch_manage")
  end
  if KSR.is_method_in("ISU") and KSR.tm.t_is_set("onreply_route") < 0 then
    KSR.tm.t_on_reply("ksr_onreply_manage")
  end
  if KSR.is_INVITE() and KSR.tm.t_is_set("failure_route") < 0 then
    KSR.tm.t_on_failure("ksr_failure_manage")
  end
  if KSR.tm.t_relay() < 0 then
    KSR.sl.sl_reply_error()
  end
  KSR.x.exit()
end

-- Per-request checks.
function ksr_route_reqinit()
  KSR.force_rport()
  ksr_route_antiflood()
  -- -1: Max-Forwards reached 0 (483); -2: a bad value, answered 400 by sanity below
  if KSR.maxfwd.process_maxfwd(10) == -1 then
    KSR.sl.sl_send_reply(483, "Too Many Hops")
    KSR.x.exit()
  end
  if KSR.sanity.sanity_check(KSR_SANITY_CHECKS, 7) < 0 then
    KSR.err("malformed SIP message from " .. KSR.kx.get_srcip() .. ":" .. KSR.kx.get_srcport() .. "\n")
    KSR.x.exit()
  end
  if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.corex.has_ruri_user() < 0 then
    KSR.sl.sl_send_reply(200, "Keepalive")
    KSR.x.exit()
  end
end

-- Flood protection (as in Kamailio's example script). A source IP in the htable "ipban" is
-- ignored until its entry expires; pike puts a source there when it sends more requests than
-- [modparam.pike] allows, auth when it fails authentication too often (failed_auth_ban).
-- Requests from this server's own addresses and from trusted peers (permissions address
-- group 1) are not counted. Known scanners are dropped: no answer tells them anything.
SCANNER_UAS = { "friendly", "scanner", "sipcli", "sipvicious", "VaxSIPUserAgent" }

function ksr_route_antiflood()
  local ua = KSR.kx.gete_ua()
  for _, name in ipairs(SCANNER_UAS) do
    if string.find(ua, name, 1, true) then
      KSR.x.exit()
    end
  end
  if not KSR.htable or KSR.is_myself_srcip() then
    return 1
  end
  if KSR.permissions and KSR.permissions.allow_source_address(1) > 0 then
    return 1
  end
  local srcip = KSR.kx.get_srcip()
  if KSR.htable.sht_get("ipban", srcip) ~= nil then
    KSR.dbg("request from blocked IP - " .. KSR.kx.get_method() .. " from " .. srcip .. "\n")
    KSR.x.exit()
  end
  if KSR.pike and KSR.pike.pike_check_req() < 0 then
    KSR.err("ALERT: pike blocking " .. KSR.kx.get_method() .. " from " .. KSR.kx.gete_furi()
      .. " (IP:" .. srcip .. ":" .. KSR.kx.get_srcport() .. ")\n")
    KSR.htable.sht_seti("ipban", srcip, 1)
    KSR.x.exit()
  end
  return 1
end

-- sanity_check() flags: SIP version, URI scheme, required headers, CSeq method and value,
-- Content-Length, Expires, Proxy-Require, parse URIs, top Via, and ksr's strict RFC 3261
-- syntax check (1048576) so malformed messages get a 400 as RFC 4475 asks.
KSR_SANITY_CHECKS = 1 + 2 + 4 + 32 + 64 + 128 + 256 + 512 + 1024 + 16384 + 1048576

-- Requests inside a dialog (with a To-tag).
function ksr_route_withindlg()
  if KSR.siputils.has_totag() < 0 then
    return 1
  end
  if KSR.rr.loose_route() > 0 then
    ksr_route_dlguri()
    if KSR.is_BYE() then
      KSR.setflag(FLT_ACC)
      KSR.setflag(FLT_ACCFAILED)
    elseif KSR.is_ACK() then
      ksr_route_natmanage()
    elseif KSR.is_NOTIFY() then
      KSR.rr.record_route()
    end
    ksr_route_relay()
    KSR.x.exit()
  end
  if KSR.is_ACK() then
    if KSR.tm.t_check_trans() > 0 then
      ksr_route_relay()
    end
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(404, "Not here")
  KSR.x.exit()
end

-- Digest authentication, when turned on with [core.defines] WITH_AUTH = 1.
function ksr_route_auth()
  if not KSR.auth or not KSR.kx.ifdef("WITH_AUTH") then
    return 1
  end
  if KSR.is_REGISTER() or KSR.is_myself_furi() then
    if KSR.auth_db.auth_check(KSR.kx.gete_fhost(), "subscriber", 1) < 0 then
      KSR.auth.auth_challenge(KSR.kx.gete_fhost(), 0)
      KSR.x.exit()
    end
    if not KSR.is_method_in("RP") then
      KSR.auth.consume_credentials()
    end
  end
  if not KSR.is_myself_furi() and not KSR.is_myself_ruri() then
    KSR.sl.sl_send_reply(403, "Not relaying")
    KSR.x.exit()
  end
  return 1
end

-- NAT detection: fix REGISTER contacts, alias Contacts of first-hop requests.
function ksr_route_natdetect()
  if not KSR.nathelper then
    return 1
  end
  if KSR.nathelper.nat_uac_test(19) > 0 then
    if KSR.is_REGISTER() then
      KSR.nathelper.fix_nated_register()
    elseif KSR.siputils.is_first_hop() > 0 then
      KSR.nathelper.set_contact_alias()
    end
    KSR.setflag(FLT_NATS)
  end
  return 1
end

-- NAT handling on branches and replies (media relaying is not part of ksr).
function ksr_route_natmanage()
  if not KSR.nathelper then
    return 1
  end
  if KSR.siputils.is_request() > 0 and KSR.siputils.has_totag() > 0 then
    if KSR.rr.check_route_param("nat=yes") > 0 then
      KSR.setbflag(FLB_NATB)
    end
  end
  if not (KSR.isflagset(FLT_NATS) or KSR.isbflagset(FLB_NATB)) then
    return 1
  end
  if KSR.siputils.is_request() > 0 then
    if KSR.siputils.has_totag() < 0 and KSR.tmx.t_is_branch_route() > 0 then
      KSR.rr.add_rr_param(";nat=yes")
    end
  end
  if KSR.siputils.is_reply() > 0 and KSR.isbflagset(FLB_NATB) then
    KSR.nathelper.set_contact_alias()
  end
  return 1
end

-- In-dialog requests to NATed users carry the alias in their R-URI.
function ksr_route_dlguri()
  if KSR.nathelper and not KSR.isdsturiset() then
    KSR.nathelper.handle_ruri_alias()
  end
  return 1
end

-- Requests for other domains are relayed as they are.
function ksr_route_sipout()
  if KSR.is_myself_ruri() then
    return 1
  end
  KSR.hdr.append("P-Hint: outbound\r\n")
  ksr_route_relay()
  KSR.x.exit()
end

-- REGISTER: store the bindings (save() sends the reply).
function ksr_route_registrar()
  if not KSR.is_REGISTER() then
    return 1
  end
  if KSR.isflagset(FLT_NATS) then
    KSR.setbflag(FLB_NATB)
    KSR.setbflag(FLB_NATSIPPING)
  end
  if KSR.registrar.save("location", 0) < 0 then
    KSR.sl.sl_reply_error()
  end
  KSR.x.exit()
end

-- Calls to local users: find their registered contacts.
function ksr_route_location()
  local rc = KSR.registrar.lookup("location")
  if rc < 0 then
    KSR.tm.t_newtran()
    if rc == -1 or rc == -3 then
      KSR.sl.send_reply(404, "Not Found")
      KSR.x.exit()
    elseif rc == -2 then
      KSR.sl.send_reply(405, "Method Not Allowed")
      KSR.x.exit()
    end
  end
  if KSR.is_INVITE() then
    KSR.setflag(FLT_ACCMISSED)
  end
  ksr_route_relay()
  KSR.x.exit()
end

-- Branch route: runs for every outgoing branch.
function ksr_branch_manage()
  KSR.dbg("new branch [" .. KSR.pv.get("$T_branch_idx") .. "] to " .. KSR.kx.get_ruri() .. "\n")
  ksr_route_natmanage()
  return 1
end

-- Reply route of the transaction.
function ksr_onreply_manage()
  local scode = KSR.kx.get_status()
  if scode > 100 and scode < 299 then
    ksr_route_natmanage()
  end
  return 1
end

-- Failure route: runs when every branch failed.
function ksr_failure_manage()
  ksr_route_natmanage()
  if KSR.tm.t_is_canceled() > 0 then
    return 1
  end
  return 1
end

-- Replies that reach the core (no transaction or before tm).
function ksr_reply_route()
  if KSR.sanity.sanity_check(17604, 6) < 0 then
    KSR.err("malformed SIP reply from " .. KSR.kx.get_srcip() .. ":" .. KSR.kx.get_srcport() .. "\n")
    KSR.x.drop()
  end
  return 1
end

-- Dialog events (the dialog module's event_callback): dialog:start, dialog:end and
-- dialog:failed. acc_cdr() writes exactly one call detail record per call.
function ksr_dialog_event(evname)
  KSR.dbg("dialog event " .. evname .. " for call " .. KSR.pv.getw("$dlg(callid)") .. "\n")
  if KSR.acc then
    KSR.acc.acc_cdr(evname)
  end
  return 1
end
