-- A routing script written for ksr's tests that makes the KSR calls Kamailio's
-- misc/examples/kemi scripts make (request init with anti-flood, NAT detection, digest and IP
-- authentication, registrar/usrloc, tm with branch/reply/failure callbacks, acc flags), so
-- tests/e2e/test_kemi_examples.py exercises the same functions without Kamailio's files.

local F_ACC, F_MISSED, F_FAILED, F_NAT = 1, 2, 3, 5
local B_NAT, B_PING = 6, 7
local SCANNERS = { "friendly", "scanner", "sipcli", "sipvicious", "VaxSIPUserAgent", "pplsip" }

local function stop() KSR.x.exit() end

local function flood_guard()
  if KSR.is_myself_srcip() then return end
  local ip = KSR.kx.get_srcip()
  if KSR.htable.sht_match_name("ipban", "eq", ip) > 0 then stop() end
  if KSR.pike.pike_check_req() < 0 then
    KSR.err("pike: blocking " .. KSR.kx.get_method() .. " from " .. ip .. ":" .. KSR.kx.get_srcport() .. "\n")
    KSR.htable.sht_seti("ipban", ip, 1)
    stop()
  end
end

local function first_checks()
  KSR.set_reply_no_connect()
  KSR.force_rport()
  flood_guard()
  local agent = KSR.kx.gete_ua()
  for _, word in ipairs(SCANNERS) do
    if string.find(agent, word, 1, true) then KSR.sl.sl_send_reply(200, "OK"); stop() end
  end
  if KSR.maxfwd.process_maxfwd(10) < 0 then KSR.sl.sl_send_reply(483, "Too Many Hops"); stop() end
  if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.corex.has_ruri_user() < 0 then
    KSR.sl.sl_send_reply(200, "Keepalive"); stop()
  end
  if KSR.sanity.sanity_check(17895, 7) < 0 then stop() end
end

local function relay()
  if KSR.is_method_in("IBSU") and KSR.tm.t_is_set("branch_route") < 0 then
    KSR.tm.t_on_branch("on_branch")
  end
  if KSR.is_method_in("ISU") and KSR.tm.t_is_set("onreply_route") < 0 then
    KSR.tm.t_on_reply("on_reply")
  end
  if KSR.is_INVITE() and KSR.tm.t_is_set("failure_route") < 0 then
    KSR.tm.t_on_failure("on_failure")
  end
  if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
  stop()
end

local function media()
  if not KSR.rtpproxy and not KSR.rtpengine then return end
  if KSR.siputils.is_request() > 0 and KSR.siputils.has_totag() > 0
      and KSR.rr.check_route_param("nat=yes") > 0 then
    KSR.setbflag(B_NAT)
  end
  if not (KSR.isflagset(F_NAT) or KSR.isbflagset(B_NAT)) then return end
  if KSR.kx.ifdef("WITH_RTPENGINE") then
    KSR.rtpengine.rtpengine_manage("replace-origin replace-session-connection")
  else
    KSR.rtpproxy.rtpproxy_manage("co")
  end
  if KSR.siputils.is_request() > 0 and KSR.siputils.has_totag() < 0
      and KSR.tmx.t_is_branch_route() > 0 then
    KSR.rr.add_rr_param(";nat=yes")
  end
  if KSR.siputils.is_reply() > 0 and KSR.isbflagset(B_NAT) then KSR.nathelper.set_contact_alias() end
end

local function in_dialog()
  if KSR.siputils.has_totag() < 0 then return end
  if KSR.rr.loose_route() > 0 then
    if KSR.nathelper and not KSR.isdsturiset() then KSR.nathelper.handle_ruri_alias() end
    if KSR.is_BYE() then
      KSR.setflag(F_ACC); KSR.setflag(F_FAILED)
    elseif KSR.is_ACK() then
      media()
    elseif KSR.is_NOTIFY() then
      KSR.rr.record_route()
    end
    relay()
  end
  if KSR.is_ACK() then
    if KSR.tm.t_check_trans() > 0 then relay() end
    stop()
  end
  KSR.sl.sl_send_reply(404, "Not here")
  stop()
end

local function authenticate()
  if not KSR.auth then return end
  if KSR.permissions and not KSR.is_REGISTER()
      and KSR.permissions.allow_source_address(1) > 0 then
    return
  end
  if KSR.is_REGISTER() or KSR.is_myself_furi() then
    local realm = KSR.kx.gete_fhost()
    if KSR.auth_db.auth_check(realm, "subscriber", 1) < 0 then
      KSR.auth.auth_challenge(realm, 0)
      stop()
    end
    if not KSR.is_method_in("RP") then KSR.auth.consume_credentials() end
  end
  if not KSR.is_myself_furi() and not KSR.is_myself_ruri() then
    KSR.sl.sl_send_reply(403, "Not relaying"); stop()
  end
end

local function detect_nat()
  if not KSR.nathelper then return end
  if KSR.nathelper.nat_uac_test(19) > 0 then
    if KSR.is_REGISTER() then
      KSR.nathelper.fix_nated_register()
    elseif KSR.siputils.is_first_hop() > 0 then
      KSR.nathelper.set_contact_alias()
    end
    KSR.setflag(F_NAT)
  end
end

function ksr_request_route()
  first_checks()
  detect_nat()
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then relay() end
    return 1
  end
  if not KSR.is_ACK() then
    if KSR.tmx.t_precheck_trans() > 0 then KSR.tm.t_check_trans(); return 1 end
    if KSR.tm.t_check_trans() == 0 then return 1 end
  end
  in_dialog()
  authenticate()
  KSR.hdr.remove("Route")
  if KSR.is_method_in("IS") then KSR.rr.record_route() end
  if KSR.is_INVITE() then KSR.setflag(F_ACC) end
  if not KSR.is_myself_ruri() then
    KSR.hdr.append("P-Hint: outbound\r\n")
    relay()
  end
  if KSR.is_REGISTER() then
    if KSR.isflagset(F_NAT) then KSR.setbflag(B_NAT); KSR.setbflag(B_PING) end
    if KSR.registrar.save("location", 0) < 0 then KSR.sl.sl_reply_error() end
    stop()
  end
  if KSR.corex.has_ruri_user() < 0 then KSR.sl.sl_send_reply(484, "Address Incomplete"); return 1 end
  local found = KSR.registrar.lookup("location")
  if found < 0 then
    KSR.tm.t_newtran()
    if found == -2 then KSR.sl.send_reply(405, "Method Not Allowed")
    else KSR.sl.send_reply(404, "Not Found") end
    stop()
  end
  if KSR.is_INVITE() then KSR.setflag(F_MISSED) end
  relay()
end

function on_branch()
  KSR.dbg("branch " .. KSR.pv.get("$T_branch_idx") .. " to " .. KSR.kx.get_ruri() .. "\n")
  media()
end

function on_reply()
  local code = KSR.kx.get_status()
  if code > 100 and code < 299 then media() end
end

function on_failure()
  media()
  if KSR.tm.t_is_canceled() > 0 then return 1 end
end

function ksr_reply_route()
  if KSR.sanity.sanity_check(17604, 6) < 0 then KSR.x.drop() end
end
