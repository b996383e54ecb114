"""Kamailio module parameters that ksr accepts (so a configuration written for Kamailio
loads) but that change nothing here: ksr always behaves as with the parameter's default (or the
value in BEHAVES_AS). Setting one to another value is named in a warning at start-up, never
dropped silently. tests/core/test_modparam_forms.py checks this table against the code: every
parameter listed exists and is read nowhere, and every parameter read nowhere is listed.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel

log = logging.getLogger("ksr.config")

NO_EFFECT = "no effect in ksr"

# module -> parameter -> why it does nothing here
IGNORED: dict[str, dict[str, str]] = {
    "acc": {"log_facility": "acc log lines go through Python logging"},
    "app_lua": {"log_mode": NO_EFFECT},
    "auth": {
        "force_stateless_reply": NO_EFFECT,
        "protect_contacts": NO_EFFECT,
        "nid_pool_no": "nonces are shared by every worker",
        "nc_array_size": "nonce counts are kept per nonce",
        "otn_in_flight_no": "nonce counts are kept per nonce",
        "auth_checks_register": "nonces are not bound to message fields",
        "auth_checks_no_dlg": "nonces are not bound to message fields",
        "auth_checks_in_dlg": "nonces are not bound to message fields",
        "add_authinfo_hdr": NO_EFFECT,
        "use_next_nonce": NO_EFFECT,
    },
    "auth_db": {
        "user_column": "the subscriber table's columns are fixed",
        "domain_column": "the subscriber table's columns are fixed",
        "version_table": NO_EFFECT,
    },
    "dialog": {
        "end_timeout": NO_EFFECT,
        "rr_param": "dialogs are matched by Call-ID and tags",
        "dlg_match_mode": "dialogs are matched by Call-ID and tags",
        "bye_early_code": NO_EFFECT,
        "bye_early_reason": NO_EFFECT,
        "enable_stats": "statistics are always kept",
    },
    "http_client": {
        "tlsversion": "the TLS library's defaults apply",
        "authmethod": NO_EFFECT,
        "netinterface": NO_EFFECT,
    },
    "htable": {
        "event_callback_mode": NO_EFFECT,
        "enable_dmq": "workers share tables without DMQ",
    },
    "jsonrpcs": {
        "dgram_workers": "one task serves the socket",
        "fifo_mode": "no FIFO transport",
        "fifo_group": "no FIFO transport",
        "fifo_user": "no FIFO transport",
        "fifo_reply_dir": "no FIFO transport",
    },
    "permissions": {"db_mode": "the address table is always cached (db_mode 1)"},
    "registrar": {
        "path_check_local": NO_EFFECT,
        "xavp_cfg": NO_EFFECT,
        "xavp_rcd": NO_EFFECT,
        "gruu_enabled": "no GRUU support",
        "outbound_mode": "no SIP outbound (RFC 5626) support",
        "regid_mode": NO_EFFECT,
        "sock_flag": NO_EFFECT,
        "sock_hdr_name": NO_EFFECT,
        "reg_callid_avp": NO_EFFECT,
        "use_expired_contacts": NO_EFFECT,
        "lookup_filter_mode": NO_EFFECT,
    },
    "rr": {
        "add_username": NO_EFFECT,
        "ignore_user": NO_EFFECT,
        "force_send_socket": NO_EFFECT,
        "enable_socket_mismatch_warning": NO_EFFECT,
        "custom_user_avp": NO_EFFECT,
    },
    "sanity": {"autodrop": "KEMI calls return -1 and the script decides"},
    "siputils": {"e164_max_len": NO_EFFECT},
    "siptrace": {
        "trace_sl_acks": NO_EFFECT,
        "xheaders_write": NO_EFFECT,
        "xheaders_read": NO_EFFECT,
        "traced_user_avp": NO_EFFECT,
        "trace_table_avp": NO_EFFECT,
        "trace_delayed": NO_EFFECT,
    },
    "sl": {"bind_tm": NO_EFFECT, "event_callback_fl_ack": NO_EFFECT},
    "tls": {
        "crl": "CRLs are not checked",
        "verify_depth": "OpenSSL's default chain depth applies",
        "connection_timeout": "core tcp_connection_lifetime applies",
    },
    "tm": {
        "auto_inv_100_reason": NO_EFFECT,
        "failure_reply_mode": "ksr keeps only the replies of the last serial-forking step (3)",
        "disable_6xx_block": NO_EFFECT,
        "event_callback": NO_EFFECT,
        "event_callback_lres_sent": NO_EFFECT,
        "contacts_avp": NO_EFFECT,
        "contact_flows_avp": NO_EFFECT,
        "unix_tx_timeout": NO_EFFECT,
        "aggregate_challenges": NO_EFFECT,
        "reparse_invite": NO_EFFECT,
        "e2e_cancel_reason": NO_EFFECT,
    },
    "usrloc": {
        "desc_time_order": NO_EFFECT,
        "matching_mode": NO_EFFECT,
        "hash_size": "the location table sizes itself",
    },
    "websocket": {
        "cors_mode": "no CORS headers are added",
        "keepalive_mechanism": "pings are answered, none are sent",
        "keepalive_timeout": "pings are answered, none are sent",
        "keepalive_interval": "pings are answered, none are sent",
        "keepalive_processes": "pings are answered, none are sent",
        "ping_application_data": "pings are answered, none are sent",
        "timer_interval": NO_EFFECT,
        "verbose_list": NO_EFFECT,
    },
    "xhttp_prom": {"xhttp_prom_buf_size": NO_EFFECT, "xhttp_prom_pkg_stats": NO_EFFECT},
    "xlog": {
        "force_color": "logs go through Python logging",
        "long_format": "logs go through Python logging",
        "log_facility": "logs go through Python logging",
        "log_colors": "logs go through Python logging",
        "methods_filter": NO_EFFECT,
    },
}


# The value ksr's behaviour matches, where it is not the parameter's default.
BEHAVES_AS: dict[str, dict[str, object]] = {"permissions": {"db_mode": 1}}


def ignored_given(module: str, params: BaseModel) -> list[tuple[str, str]]:
    """(parameter, why) for each ignored parameter the configuration sets for ``module`` to a
    value other than the one ksr behaves as."""
    table = IGNORED.get(module, {})
    fields = type(params).model_fields
    out = []
    for n in sorted(params.model_fields_set):
        if n not in table:
            continue
        same = BEHAVES_AS.get(module, {}).get(n, fields[n].default)
        if getattr(params, n) != same:
            out.append((n, table[n]))
    return out


def warn_ignored(module: str, params: BaseModel, source: str | None = None) -> None:
    where = f"{source}: " if source else ""
    for name, why in ignored_given(module, params):
        log.warning(
            "%s[modparam.%s] %s is accepted for Kamailio configurations but ignored (%s)",
            where,
            module,
            name,
            why,
        )
