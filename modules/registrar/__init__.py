"""registrar: REGISTER processing and lookup of registered contacts (KSR.registrar).

Bindings live in usrloc; this module parses and checks REGISTER requests (``save.py``),
answers them, and turns AORs back into contacts (``lookup.py``).
"""

from __future__ import annotations

from typing import Any

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.pv import pv
from ksr.core.stats import ONE
from ksr.kemi.registry import Route, XVal, kemi
from ksr.modules.usrloc.api import Contact, UsrlocApi, UsrlocError
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.uri import parse_uri
from ksr.suspend.locks import KeyedLock

from . import errors
from .lookup import ERROR, FOUND, NOT_FOUND, Lookup, lookup, valid_contacts
from .parse import aor_of, parse_q
from .save import SaveParams, Saver, reply, save_and_reply
from .ulc import Fetched, UlcProfiles, contact_attr, record_attr


class RegistrarParams(ModParams):
    default_expires: int = 3600
    default_expires_range: int = 0
    expires_range: int = 0
    min_expires: int = 60
    min_expires_mode: int = 0
    max_expires: int = 0
    default_q: int = -1  # q*1000; -1 = no q
    append_branches: int = 1
    max_contacts: int = 0
    retry_after: int = 0
    method_filtering: int = 0
    use_path: int = 0
    path_mode: int = 2
    path_use_received: int = 0
    path_check_local: int = 0
    # Kamailio's default is empty; ksr reads the AVP nathelper's fix_nated_register() fills.
    received_avp: str = "$avp(RECEIVED)"
    received_param: str = "received"
    case_sensitive: int = 1
    realm_prefix: str = ""
    event_callback: str = ""
    cseq_delay: int = 20
    xavp_cfg: str = ""
    xavp_rcd: str = ""
    gruu_enabled: int = 0
    outbound_mode: int = 0
    regid_mode: int = 0
    sock_flag: int = -1
    sock_hdr_name: str = ""
    reg_callid_avp: str = ""
    use_expired_contacts: int = 0
    lookup_filter_mode: int = 0


class Registrar(Module):
    name = "registrar"
    Params = RegistrarParams
    depends = ("usrloc",)
    events = ("usrloc:contact-expired",)

    def __init__(self, server: Any, params: RegistrarParams) -> None:
        super().__init__(server, params)
        self.params: RegistrarParams = params
        self.ulc = UlcProfiles()
        self.aor_locks = KeyedLock()  # save(): one REGISTER per AOR at a time
        self.waits = True  # whether save() may wait (on usrloc's database): set in init
        self.aors_seen: dict[tuple[str, bool, str, bool], str] = {}  # lookup's, by R-URI

    def may_wait(self, name: str) -> bool:
        """The KSR calls wait only on usrloc's database: with db_mode 0 never."""
        return self.usrloc.stores

    def init(self) -> None:
        self.usrloc = self.require("usrloc", UsrlocApi)
        self.usrloc.on_expired(self._on_expired)
        self.waits = self.usrloc.stores
        # what save() reads of the settings, read once (they do not change at run time)
        self.save_params = SaveParams(self.params, self.usrloc)
        # what the bindings of save() and lookup() call (compiled, ``via``)
        self.saver = Saver(self)
        self.lookuper = Lookup(self)
        st = self.server.stats
        self.c_accepted = st.counter("registrar", "accepted_regs", doc="REGISTER requests saved")
        self.c_rejected = st.counter("registrar", "rejected_regs", doc="REGISTER requests refused")
        p = self.params
        # settings: every worker has the same value (not added up over workers)
        for name, read, doc in (
            ("default_expire", lambda: p.default_expires, "setting default_expires (seconds)"),
            (
                "default_expires_range",
                lambda: p.default_expires_range,
                "setting default_expires_range (percent)",
            ),
            ("expires_range", lambda: p.expires_range, "setting expires_range (percent)"),
            ("max_contacts", lambda: p.max_contacts, "setting max_contacts"),
            ("max_expires", lambda: p.max_expires, "setting max_expires (seconds)"),
        ):
            st.gauge("registrar", name, read, doc, ONE)

    @pv("ulc")
    def _pv_ulc(self, ctx: MsgContext, arg: str, idx: int | None) -> int | str | None:
        return self.ulc.pv_get(ctx, arg, idx)

    def _on_expired(self, table: str, c: Contact) -> None:
        cb = self.params.event_callback
        if not cb:
            return
        self.ulc.profiles["exp"] = Fetched(c.aor, table, [c])
        self.server.run_event(cb, "usrloc:contact-expired")

    # -- KSR.registrar -----------------------------------------------------------------------
    @kemi(suspends=True, routes=Route.REQUEST | Route.ONREPLY, via=lambda reg: reg.saver)
    def save(self, ctx: MsgContext, table: str, flags: int) -> int:
        """save(table, flags): store the REGISTER's bindings and answer it. 1 inserted,
        2 updated, 3 deleted, 4 listed, -1 error, -2 too many contacts. Flags: 0x01 memory
        only, 0x02 no reply (see reg_send_reply), 0x04 one contact per AOR, 0x08 no expires
        randomisation."""
        return save_and_reply(self, ctx, table, flags, None)

    @kemi(suspends=True)
    def save_uri(self, ctx: MsgContext, table: str, flags: int, uri: str) -> int:
        """save_uri(table, flags, uri): like save() with the AOR taken from uri instead of To."""
        return save_and_reply(self, ctx, table, flags, uri)

    @kemi()
    def reg_send_reply(self, ctx: MsgContext) -> int:
        """Send the reply prepared by save(table, 0x02)."""
        pending = ctx.extra.pop("reg_reply", None)
        if pending is None:
            return -1
        code, hdrs = pending
        return 1 if reply(self, ctx, code, hdrs) else -1

    @kemi(suspends=True, routes=Route.REQUEST | Route.FAILURE, via=lambda reg: reg.lookuper)
    def lookup(self, ctx: MsgContext, table: str) -> int:
        """lookup(table): R-URI -> registered contacts (best into R-URI, others as branches).
        1 found, -1 not found, -2 method not allowed, -3 error."""
        return lookup(self, ctx, table, None)

    @kemi(suspends=True)
    def lookup_uri(self, ctx: MsgContext, table: str, uri: str) -> int:
        """lookup_uri(table, uri): lookup() for the AOR of uri."""
        return lookup(self, ctx, table, uri)

    @kemi(suspends=True)
    def lookup_to_dset(self, ctx: MsgContext, table: str, uri: str) -> int:
        """lookup_to_dset(table, uri): add the contacts of uri (or R-URI) as branches only."""
        return lookup(self, ctx, table, uri or None, to_dset=True)

    @kemi(suspends=True)
    def lookup_branches(self, ctx: MsgContext, table: str) -> int:
        """lookup_branches(table): lookup() on the R-URI and on every plain branch."""
        old = list(ctx.branches)
        ctx.branches = []
        rc = lookup(self, ctx, table, None)
        for b in old:
            if b.dst_uri or b.path:
                ctx.branches.append(b)
                continue
            n = len(ctx.branches)
            r = lookup(self, ctx, table, b.uri, to_dset=True)
            if r == FOUND:
                rc = FOUND
            elif len(ctx.branches) == n:
                ctx.branches.append(b)
        return rc

    @kemi(suspends=True)
    def lookup_xavp(self, ctx: MsgContext, table: str, uri: str, rxname: str, cxname: str) -> int:
        """lookup_xavp(table, uri, rxname, cxname): the record into $xavp(rxname) and each
        contact into $xavp(cxname)."""
        found = valid_contacts(self, table, uri)
        if isinstance(found, int):
            return found
        if not found:
            return NOT_FOUND
        ctx.xavps[rxname] = [{"aor": [found[0].aor], "count": [len(found)]}]
        items = []
        for c in found:
            item: dict[str, list[int | str]] = {}
            for attr in (
                "addr",
                "path",
                "received",
                "socket",
                "user_agent",
                "ruid",
                "instance",
                "callid",
                "q",
                "expires",
                "cflags",
                "flags",
                "methods",
                "reg_id",
            ):
                v = contact_attr(c, attr)
                if v is not None:
                    item["uri" if attr == "addr" else attr] = [v]
            items.append(item)
        ctx.xavps[cxname] = items
        return FOUND

    def _registered(self, ctx: MsgContext, table: str, uri: str, match_flags: int) -> int:
        target = uri
        if not target:
            if ctx.is_request:
                target = ctx.ruri or ""
            else:
                try:
                    target = ctx.msg.to.uri_text
                except RemoteProtocolError:
                    return NOT_FOUND
        found = valid_contacts(self, table, target)
        if isinstance(found, int):
            return found
        if match_flags:
            found = [c for c in found if c.cflags & match_flags == match_flags]
        return FOUND if found else NOT_FOUND

    @kemi(suspends=True)
    def registered(self, ctx: MsgContext, table: str) -> int:
        """registered(table): 1 if the R-URI's AOR (To-URI in replies) has live contacts."""
        return self._registered(ctx, table, "", 0)

    @kemi(suspends=True)
    def registered_uri(self, ctx: MsgContext, table: str, uri: str) -> int:
        """registered_uri(table, uri)."""
        return self._registered(ctx, table, uri, 0)

    @kemi(suspends=True)
    def registered_flags(self, ctx: MsgContext, table: str, uri: str, match_flags: int) -> int:
        """registered_flags(table, uri, match_flags): only contacts with those cflags count."""
        return self._registered(ctx, table, uri, match_flags)

    @kemi(suspends=True)
    def registered_action(
        self, ctx: MsgContext, table: str, uri: str, match_flags: int, action_flags: int
    ) -> int:
        """registered_action(table, uri, match_flags, action_flags)."""
        return self._registered(ctx, table, uri, match_flags)

    @kemi()
    def set_q_override(self, ctx: MsgContext, q: str) -> int:
        """set_q_override(q): q value ("0.5") for the contacts the next save() stores."""
        try:
            ctx.extra["reg_q_override"] = parse_q(q)
        except errors.RegError:
            return -1
        return 1

    @kemi()
    def add_sock_hdr(self, ctx: MsgContext, hname: str) -> int:
        """add_sock_hdr(hname): name of a header carrying the receiving socket."""
        if not hname:
            return -1
        ctx.extra["reg_sock_hdr"] = hname
        return 1

    def _aor(self, uri: str) -> str | None:
        try:
            return aor_of(
                uri,
                self.usrloc.use_domain,
                self.params.realm_prefix,
                bool(self.params.case_sensitive),
            )
        except errors.RegError:
            return None

    @kemi(suspends=True)
    def unregister(self, ctx: MsgContext, table: str, uri: str) -> int:
        """unregister(table, uri): remove every contact of the AOR. 0 done (sic), -1 bad AOR,
        -2 error, -3 not found."""
        return self._unregister(table, uri, "")

    @kemi(suspends=True)
    def unregister_ruid(self, ctx: MsgContext, table: str, uri: str, ruid: str) -> int:
        """unregister_ruid(table, uri, ruid): remove one contact by its ruid."""
        return self._unregister(table, uri, ruid)

    def _unregister(self, table: str, uri: str, ruid: str) -> int:
        aor = self._aor(uri)
        if aor is None:
            return -1
        d = self.usrloc.domain(table)
        try:
            cs = [c for c in d.get(aor) if not ruid or c.ruid == ruid]
            if not cs:
                return -3
            for c in cs:
                d.remove(c)
        except UsrlocError:
            return -2
        return 0

    @kemi(suspends=True)
    def reg_fetch_contacts(self, ctx: MsgContext, table: str, uri: str, profile: str) -> int:
        """reg_fetch_contacts(table, uri, profile): load the AOR's contacts into
        $ulc(profile=>attr). 1 found, -1 not found."""
        aor = self._aor(uri)
        if aor is None:
            return -1
        found = valid_contacts(self, table, uri)
        if isinstance(found, int):
            return -1 if found != ERROR else -1
        self.ulc.profiles[profile] = Fetched(aor, table, found)
        return FOUND if found else NOT_FOUND

    @kemi()
    def reg_free_contacts(self, ctx: MsgContext, profile: str) -> int:
        """reg_free_contacts(profile): forget fetched contacts."""
        self.ulc.profiles.pop(profile, None)
        return 1

    @kemi()
    def ulc_rget(self, ctx: MsgContext, profile: str, attr: str) -> XVal:
        """ulc_rget(profile, attr): a record attribute (aor, domain, aorhash, count)."""
        f = self.ulc.profiles.get(profile)
        return None if f is None else record_attr(f, attr)

    @kemi()
    def ulc_cget(self, ctx: MsgContext, profile: str, attr: str, idx: int) -> XVal:
        """ulc_cget(profile, attr, idx): attribute of the idx-th fetched contact."""
        f = self.ulc.profiles.get(profile)
        if f is None or not 0 <= idx < len(f.contacts):
            return None
        return contact_attr(f.contacts[idx], attr)

    @kemi(suspends=True)
    def reg_from_user(self, ctx: MsgContext, table: str, uri: str, mode: int) -> int:
        """reg_from_user(table, uri, mode): 1 if the message comes from an address a contact
        of the AOR registered from (received, else the contact's host:port)."""
        found = valid_contacts(self, table, uri)
        if isinstance(found, int) or not found:
            return -1
        for c in found:
            addr = c.received or c.contact
            try:
                u = parse_uri(addr)
            except RemoteProtocolError:
                continue
            if u.host.strip("[]") == ctx.src_ip and (u.port or 5060) == ctx.src_port:
                return 1
            if mode & 1 and u.host.strip("[]") == ctx.src_ip:
                return 1
        return -1


MODULE = Registrar
