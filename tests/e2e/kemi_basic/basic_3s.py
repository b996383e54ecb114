"""A routing script written for ksr's tests, app_python3s style (module-level routes, no
mod_init), making the KSR calls Kamailio's misc/examples/kemi Python scripts make. A helper
returns STOP (-255) when the request is handled, the Python examples' way to end a route."""

import KSR

F_ACC, F_MISSED, F_FAILED, F_NAT = 1, 2, 3, 5
B_NAT, B_PING = 6, 7
STOP = -255
SCANNERS = ("friendly", "scanner", "sipcli", "sipvicious", "VaxSIPUserAgent", "pplsip")


def flood_guard():
    if KSR.is_myself_srcip():
        return 1
    ip = KSR.kx.get_srcip()
    if KSR.htable.sht_match_name("ipban", "eq", ip) > 0:
        return STOP
    if KSR.pike.pike_check_req() < 0:
        KSR.err(f"pike: blocking {KSR.kx.get_method()} from {ip}:{KSR.pv.get('$sp')}\n")
        KSR.htable.sht_seti("ipban", ip, 1)
        return STOP
    return 1


def first_checks():
    KSR.set_reply_no_connect()
    KSR.force_rport()
    if flood_guard() == STOP:
        return STOP
    if KSR.corex.has_user_agent() > 0:
        agent = KSR.kx.gete_ua()
        if any(word in agent for word in SCANNERS):
            KSR.sl.sl_send_reply(200, "Processed")
            return STOP
    if KSR.maxfwd.process_maxfwd(10) < 0:
        KSR.sl.sl_send_reply(483, "Too Many Hops")
        return STOP
    if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.corex.has_ruri_user() < 0:
        KSR.sl.sl_send_reply(200, "Keepalive")
        return STOP
    if KSR.sanity.sanity_check(17895, 7) < 0:
        return STOP
    return 1


def relay():
    if KSR.is_method_in("IBSU") and KSR.tm.t_is_set("branch_route") < 0:
        KSR.tm.t_on_branch("on_branch")
    if KSR.is_method_in("ISU") and KSR.tm.t_is_set("onreply_route") < 0:
        KSR.tm.t_on_reply("on_reply")
    if KSR.is_INVITE() and KSR.tm.t_is_set("failure_route") < 0:
        KSR.tm.t_on_failure("on_failure")
    if KSR.tm.t_relay() < 0:
        KSR.sl.sl_reply_error()
    return STOP


def media():
    if KSR.siputils.is_request() > 0 and KSR.siputils.has_totag() > 0:
        if KSR.rr.check_route_param("nat=yes") > 0:
            KSR.setbflag(B_NAT)
    if not (KSR.isflagset(F_NAT) or KSR.isbflagset(B_NAT)):
        return 1
    KSR.rtpproxy.rtpproxy_manage("co")
    if KSR.siputils.is_request() > 0 and KSR.siputils.has_totag() < 0:
        if KSR.tmx.t_is_branch_route() > 0:
            KSR.rr.add_rr_param(";nat=yes")
    if KSR.siputils.is_reply() > 0 and KSR.isbflagset(B_NAT):
        KSR.nathelper.set_contact_alias()
    return 1


def in_dialog():
    if KSR.siputils.has_totag() < 0:
        return 1
    if KSR.rr.loose_route() > 0:
        if not KSR.isdsturiset():
            KSR.nathelper.handle_ruri_alias()
        if KSR.is_BYE():
            KSR.setflag(F_ACC)
            KSR.setflag(F_FAILED)
        elif KSR.is_ACK():
            media()
        elif KSR.is_NOTIFY():
            KSR.rr.record_route()
        return relay()
    if KSR.is_ACK():
        if KSR.tm.t_check_trans() > 0:
            return relay()
        return STOP
    KSR.sl.sl_send_reply(404, "Not here")
    return STOP


def authenticate():
    if not KSR.is_REGISTER() and KSR.permissions.allow_source_address(1) > 0:
        return 1
    if KSR.is_REGISTER() or KSR.is_myself_furi():
        realm = KSR.pv.get("$fd")
        if KSR.auth_db.auth_check(realm, "subscriber", 1) < 0:
            KSR.auth.auth_challenge(realm, 0)
            return STOP
        if not KSR.is_method_in("RP"):
            KSR.auth.consume_credentials()
    if not KSR.is_myself_furi() and not KSR.is_myself_ruri():
        KSR.sl.sl_send_reply(403, "Not relaying")
        return STOP
    return 1


def detect_nat():
    KSR.force_rport()
    if KSR.nathelper.nat_uac_test(19) > 0:
        if KSR.is_REGISTER():
            KSR.nathelper.fix_nated_register()
        elif KSR.siputils.is_first_hop() > 0:
            KSR.nathelper.set_contact_alias()
        KSR.setflag(F_NAT)
    return 1


def route_local():
    if KSR.is_REGISTER():
        if KSR.isflagset(F_NAT):
            KSR.setbflag(B_NAT)
            KSR.setbflag(B_PING)
        if KSR.registrar.save("location", 0) < 0:
            KSR.sl.sl_reply_error()
        return STOP
    if KSR.corex.has_ruri_user() < 0:
        KSR.sl.sl_send_reply(484, "Address Incomplete")
        return STOP
    found = KSR.registrar.lookup("location")
    if found < 0:
        KSR.tm.t_newtran()
        if found == -2:
            KSR.sl.send_reply(405, "Method Not Allowed")
        else:
            KSR.sl.send_reply(404, "Not Found")
        return STOP
    if KSR.is_INVITE():
        KSR.setflag(F_MISSED)
    return relay()


def ksr_request_route():
    if first_checks() == STOP or detect_nat() == STOP:
        return 1
    if KSR.is_CANCEL():
        if KSR.tm.t_check_trans() > 0:
            relay()
        return 1
    if not KSR.is_ACK():
        if KSR.tmx.t_precheck_trans() > 0:
            KSR.tm.t_check_trans()
            return 1
        if KSR.tm.t_check_trans() == 0:
            return 1
    if in_dialog() == STOP or authenticate() == STOP:
        return 1
    KSR.hdr.remove("Route")
    if KSR.is_method_in("IS"):
        KSR.rr.record_route()
    if KSR.is_INVITE():
        KSR.setflag(F_ACC)
    if not KSR.is_myself_ruri():
        KSR.hdr.append("P-Hint: outbound\r\n")
        relay()
        return 1
    route_local()
    return 1


def on_branch():
    KSR.dbg(f"branch {KSR.pv.get('$T_branch_idx')} to {KSR.pv.get('$ru')}\n")
    media()
    return 1


def on_reply():
    code = KSR.pv.get("$rs")
    if code > 100 and code < 299:
        media()
    return 1


def on_failure():
    media()
    if KSR.tm.t_is_canceled() > 0:
        return 1
    return 1


def ksr_reply_route():
    if KSR.sanity.sanity_check(17604, 6) < 0:
        KSR.set_drop()
        return STOP
    return 1
