# ksr default routing script (Python). scripts/default.lua holds the same logic in Lua:
# keep the two in step.
#
# A production-style proxy and registrar: request sanity, OPTIONS keepalive, NAT handling,
# retransmission absorption, in-dialog routing by Route headers, optional digest
# authentication ([core.defines] WITH_AUTH = 1), registrations into the location table,
# calls to registered users with dialog tracking, and call detail records from dialog events.
# KSR.x.exit() ends the route from any depth (ksr offers it in Python too; sys.exit() works).
import KSR

FLT_ACC = 1
FLT_ACCMISSED = 2
FLT_ACCFAILED = 3
FLT_NATS = 5
FLB_NATB = 6
FLB_NATSIPPING = 7

# sanity_check() flags: SIP version, URI scheme, required headers, CSeq method and value,
# Content-Length, Expires, Proxy-Require, parse URIs, top Via, and ksr's strict RFC 3261
# syntax check (1048576) so malformed messages get a 400 as RFC 4475 asks.
# User-Agents of known scanners (svmap, svwar, svcrack, sipcli...): dropped without an answer.
SCANNER_UAS = ("friendly", "scanner", "sipcli", "sipvicious", "VaxSIPUserAgent")

KSR_SANITY_CHECKS = 1 + 2 + 4 + 32 + 64 + 128 + 256 + 512 + 1024 + 16384 + 1048576


def mod_init():
    return Router()


class Router:
    def child_init(self, rank):
        return 0

    # Request route: every SIP request enters here.
    def ksr_request_route(self, msg):
        self.ksr_route_reqinit(msg)
        self.ksr_route_natdetect(msg)

        # CANCEL: relay it to the branches of its INVITE, absorb it otherwise
        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                self.ksr_route_relay(msg)
            return 1

        # retransmissions are absorbed by their transaction
        if not KSR.is_ACK():
            if KSR.tmx.t_precheck_trans() > 0:
                KSR.tm.t_check_trans()
                return 1
            if KSR.tm.t_check_trans() == 0:
                return 1

        self.ksr_route_withindlg(msg)
        self.ksr_route_auth(msg)

        # initial requests: drop preloaded Route headers, record-route dialog-forming requests
        KSR.hdr.remove("Route")
        if KSR.is_method_in("IS"):
            KSR.rr.record_route()
        if KSR.is_INVITE():
            KSR.setflag(FLT_ACC)
            if hasattr(KSR, "dialog"):
                KSR.dialog.dlg_manage()

        self.ksr_route_sipout(msg)
        self.ksr_route_registrar(msg)

        if KSR.corex.has_ruri_user() < 0:
            KSR.sl.sl_send_reply(484, "Address Incomplete")
            KSR.x.exit()
        self.ksr_route_location(msg)
        return 1

    # Stateful relay with branch, reply and failure callbacks.
    def ksr_route_relay(self, msg):
        if KSR.is_method_in("IBSU") and KSR.tm.t_is_set("branch_route") < 0:
            KSR.tm.t_on_branch("ksr_branch_manage")
        if KSR.is_method_in("ISU") and KSR.tm.t_is_set("onreply_route") < 0:
            KSR.tm.t_on_reply("ksr_onreply_manage")
        if KSR.is_INVITE() and KSR.tm.t_is_set("failure_route") < 0:
            KSR.tm.t_on_failure("ksr_failure_manage")
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()
        KSR.x.exit()

    # Per-request checks.
    def ksr_route_reqinit(self, msg):
        KSR.force_rport()
        self.ksr_route_antiflood(msg)
        # -1: Max-Forwards reached 0 (483); -2: a bad value, answered 400 by sanity below
        if KSR.maxfwd.process_maxfwd(10) == -1:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            KSR.x.exit()
        if KSR.sanity.sanity_check(KSR_SANITY_CHECKS, 7) < 0:
            KSR.err("malformed SIP message from %s:%d\n" % (KSR.kx.get_srcip(), KSR.kx.get_srcport()))
            KSR.x.exit()
        if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.corex.has_ruri_user() < 0:
            KSR.sl.sl_send_reply(200, "Keepalive")
            KSR.x.exit()

    # Flood protection (as in Kamailio's example script). A source IP in the htable "ipban" is
    # ignored until its entry expires; pike puts a source there when it sends more requests than
    # [modparam.pike] allows, auth when it fails authentication too often (failed_auth_ban).
    # Requests from this server's own addresses and from trusted peers (permissions address
    # group 1) are not counted. Known scanners are dropped: no answer tells them anything.
    def ksr_route_antiflood(self, msg):
        ua = KSR.kx.gete_ua()
        if any(name in ua for name in SCANNER_UAS):
            KSR.x.exit()
        if not hasattr(KSR, "htable") or KSR.is_myself_srcip():
            return 1
        if hasattr(KSR, "permissions") and KSR.permissions.allow_source_address(1) > 0:
            return 1
        srcip = KSR.kx.get_srcip()
        if KSR.htable.sht_get("ipban", srcip) is not None:
            KSR.dbg("request from blocked IP - %s from %s\n" % (KSR.kx.get_method(), srcip))
            KSR.x.exit()
        if hasattr(KSR, "pike") and KSR.pike.pike_check_req() < 0:
            KSR.err(
                "ALERT: pike blocking %s from %s (IP:%s:%d)\n"
                % (KSR.kx.get_method(), KSR.kx.gete_furi(), srcip, KSR.kx.get_srcport())
            )
            KSR.htable.sht_seti("ipban", srcip, 1)
            KSR.x.exit()
        return 1

    # Requests inside a dialog (with a To-tag).
    def ksr_route_withindlg(self, msg):
        if KSR.siputils.has_totag() < 0:
            return 1
        if KSR.rr.loose_route() > 0:
            self.ksr_route_dlguri(msg)
            if KSR.is_BYE():
                KSR.setflag(FLT_ACC)
                KSR.setflag(FLT_ACCFAILED)
            elif KSR.is_ACK():
                self.ksr_route_natmanage(msg)
            elif KSR.is_NOTIFY():
                KSR.rr.record_route()
            self.ksr_route_relay(msg)
            KSR.x.exit()
        if KSR.is_ACK():
            if KSR.tm.t_check_trans() > 0:
                self.ksr_route_relay(msg)
            KSR.x.exit()
        KSR.sl.sl_send_reply(404, "Not here")
        KSR.x.exit()

    # Digest authentication, when turned on with [core.defines] WITH_AUTH = 1.
    def ksr_route_auth(self, msg):
        if not hasattr(KSR, "auth") or not KSR.kx.ifdef("WITH_AUTH"):
            return 1
        if KSR.is_REGISTER() or KSR.is_myself_furi():
            if KSR.auth_db.auth_check(KSR.kx.gete_fhost(), "subscriber", 1) < 0:
                KSR.auth.auth_challenge(KSR.kx.gete_fhost(), 0)
                KSR.x.exit()
            if not KSR.is_method_in("RP"):
                KSR.auth.consume_credentials()
        if not KSR.is_myself_furi() and not KSR.is_myself_ruri():
            KSR.sl.sl_send_reply(403, "Not relaying")
            KSR.x.exit()
        return 1

    # NAT detection: fix REGISTER contacts, alias Contacts of first-hop requests.
    def ksr_route_natdetect(self, msg):
        if not hasattr(KSR, "nathelper"):
            return 1
        if KSR.nathelper.nat_uac_test(19) > 0:
            if KSR.is_REGISTER():
                KSR.nathelper.fix_nated_register()
            elif KSR.siputils.is_first_hop() > 0:
                KSR.nathelper.set_contact_alias()
            KSR.setflag(FLT_NATS)
        return 1

    # NAT handling on branches and replies (media relaying is not part of ksr).
    def ksr_route_natmanage(self, msg):
        if not hasattr(KSR, "nathelper"):
            return 1
        if KSR.siputils.is_request() > 0 and KSR.siputils.has_totag() > 0:
            if KSR.rr.check_route_param("nat=yes") > 0:
                KSR.setbflag(FLB_NATB)
        if not (KSR.isflagset(FLT_NATS) or KSR.isbflagset(FLB_NATB)):
            return 1
        if KSR.siputils.is_request() > 0:
            if KSR.siputils.has_totag() < 0 and KSR.tmx.t_is_branch_route() > 0:
                KSR.rr.add_rr_param(";nat=yes")
        if KSR.siputils.is_reply() > 0 and KSR.isbflagset(FLB_NATB):
            KSR.nathelper.set_contact_alias()
        return 1

    # In-dialog requests to NATed users carry the alias in their R-URI.
    def ksr_route_dlguri(self, msg):
        if hasattr(KSR, "nathelper") and not KSR.isdsturiset():
            KSR.nathelper.handle_ruri_alias()
        return 1

    # Requests for other domains are relayed as they are.
    def ksr_route_sipout(self, msg):
        if KSR.is_myself_ruri():
            return 1
        KSR.hdr.append("P-Hint: outbound\r\n")
        self.ksr_route_relay(msg)
        KSR.x.exit()

    # REGISTER: store the bindings (save() sends the reply).
    def ksr_route_registrar(self, msg):
        if not KSR.is_REGISTER():
            return 1
        if KSR.isflagset(FLT_NATS):
            KSR.setbflag(FLB_NATB)
            KSR.setbflag(FLB_NATSIPPING)
        if KSR.registrar.save("location", 0) < 0:
            KSR.sl.sl_reply_error()
        KSR.x.exit()

    # Calls to local users: find their registered contacts.
    def ksr_route_location(self, msg):
        rc = KSR.registrar.lookup("location")
        if rc < 0:
            KSR.tm.t_newtran()
            if rc == -1 or rc == -3:
                KSR.sl.send_reply(404, "Not Found")
                KSR.x.exit()
            elif rc == -2:
                KSR.sl.send_reply(405, "Method Not Allowed")
                KSR.x.exit()
        if KSR.is_INVITE():
            KSR.setflag(FLT_ACCMISSED)
        self.ksr_route_relay(msg)
        KSR.x.exit()

    # Branch route: runs for every outgoing branch.
    def ksr_branch_manage(self, msg):
        KSR.dbg("new branch [%s] to %s\n" % (KSR.pv.get("$T_branch_idx"), KSR.kx.get_ruri()))
        self.ksr_route_natmanage(msg)
        return 1

    # Reply route of the transaction.
    def ksr_onreply_manage(self, msg):
        scode = KSR.kx.get_status()
        if 100 < scode < 299:
            self.ksr_route_natmanage(msg)
        return 1

    # Failure route: runs when every branch failed.
    def ksr_failure_manage(self, msg):
        self.ksr_route_natmanage(msg)
        if KSR.tm.t_is_canceled() > 0:
            return 1
        return 1

    # Replies that reach the core (no transaction or before tm).
    def ksr_reply_route(self, msg):
        if KSR.sanity.sanity_check(17604, 6) < 0:
            KSR.err("malformed SIP reply from %s:%d\n" % (KSR.kx.get_srcip(), KSR.kx.get_srcport()))
            KSR.x.drop()
        return 1

    # Dialog events (the dialog module's event_callback): dialog:start, dialog:end and
    # dialog:failed. acc_cdr() writes exactly one call detail record per call.
    def ksr_dialog_event(self, msg, evname):
        KSR.dbg("dialog event %s for call %s\n" % (evname, KSR.pv.getw("$dlg(callid)")))
        if hasattr(KSR, "acc"):
            KSR.acc.acc_cdr(evname)
        return 1
