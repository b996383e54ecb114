"""save(): apply a REGISTER to the location table (RFC 3261 §10.3 steps 5–8).

Everything is checked first (contacts, expires, CSeq order, limits); only then are bindings
changed, so a refused REGISTER leaves the table as it was.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ksr.core.context import MsgContext, SocketInfo
from ksr.modules.usrloc.api import ALL_METHODS, Contact, Domain, UsrlocApi, UsrlocError
from ksr.sip.builders import default_reason
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import parse_name_addr, split_commas
from ksr.sip.message import Header, parse_header_text
from ksr.sip.uri import parse_uri

from . import errors
from .methods import methods_from_allow
from .parse import (
    MAX_CALLID,
    ContactReq,
    SaveHeaders,
    aor_of,
    aor_of_uri,
    contacts_of,
    expires_header,
    path_of,
    save_headers,
    supports,
)

if TYPE_CHECKING:
    from . import Registrar, RegistrarParams

log = logging.getLogger("ksr.registrar")

FLAG_MEM_ONLY: Final = 0x01
FLAG_NO_REPLY: Final = 0x02
FLAG_SINGLE: Final = 0x04
FLAG_NO_RANDOM: Final = 0x08


# The classes here are dataclasses with init=False and their __init__ written out: mypyc
# compiles it, where the generated one runs as Python code (~2,000 instructions per object).
@dataclass(slots=True, init=False)
class SaveResult:
    rc: int  # 1 inserted, 2 updated, 3 deleted, 4 listed
    aor: str
    bindings: list[Contact] = field(default_factory=list)  # for the 200 OK
    path: str = ""
    now: float = 0.0  # the time the bindings were saved at (their expires count from it)

    def __init__(
        self,
        rc: int,
        aor: str,
        bindings: list[Contact] | None = None,
        path: str = "",
        now: float = 0.0,
    ) -> None:
        self.rc = rc
        self.aor = aor
        self.bindings = [] if bindings is None else bindings
        self.path = path
        self.now = now


@dataclass(slots=True, init=False)
class _Op:
    kind: str  # "insert", "update", "delete", "skip"
    contact: Contact

    def __init__(self, kind: str, contact: Contact) -> None:
        self.kind = kind
        self.contact = contact


class SaveParams:
    """The registrar and usrloc settings save() reads, read once (Registrar.init): compiled,
    each is a field of this object, where a module parameter read per REGISTER is a Python
    attribute lookup (and usrloc's a Python property)."""

    def __init__(self, p: RegistrarParams, usrloc: UsrlocApi) -> None:
        self.usrloc = usrloc
        self.waits = usrloc.stores  # whether save() may wait (on usrloc's database)
        self.default_expires: int = p.default_expires
        self.default_expires_range: int = p.default_expires_range
        self.expires_range: int = p.expires_range
        self.min_expires: int = p.min_expires
        self.min_expires_mode: int = p.min_expires_mode
        self.max_expires: int = p.max_expires
        self.default_q: int = p.default_q
        self.max_contacts: int = p.max_contacts
        self.retry_after: int = p.retry_after
        self.use_path: int = p.use_path
        self.path_mode: int = p.path_mode
        self.path_use_received: int = p.path_use_received
        self.received_avp: str = p.received_avp
        self.received_param: str = p.received_param
        self.case_sensitive: bool = bool(p.case_sensitive)
        self.realm_prefix: str = p.realm_prefix
        self.cseq_delay: int = p.cseq_delay
        self.use_domain = usrloc.use_domain
        self.server_id = usrloc.server_id  # for the rows it writes


def _expires_for(p: SaveParams, c: ContactReq, hdr: int | None, flags: int) -> int:
    e = c.expires if c.expires is not None else (hdr if hdr is not None else p.default_expires)
    if e == 0:
        return 0
    if p.min_expires and e < p.min_expires:
        if p.min_expires_mode:
            raise errors.err(errors.LOW_EXP, f"Min-Expires: {p.min_expires}")
        e = p.min_expires
    if p.max_expires and e > p.max_expires:
        e = p.max_expires
    rng = (
        p.expires_range
        if c.expires is not None or hdr is not None
        else (p.default_expires_range or p.expires_range)
    )
    if rng and not flags & FLAG_NO_RANDOM:
        e -= random.randint(0, e * rng // 100)
    return max(e, 1)


def _matches(old: Contact, new: ContactReq) -> bool:
    if new.instance and old.instance:
        return old.instance == new.instance and old.reg_id == new.reg_id
    return old.contact == new.uri


def _received(p: SaveParams, ctx: MsgContext, path: str) -> str:
    if p.path_use_received and path:
        try:
            first = parse_name_addr(split_commas(path)[0])
            rcv = first.uri.params.get("received")
            if rcv:
                return rcv.strip('"')
        except RemoteProtocolError:
            pass
    avp = p.received_avp
    # an $avp(...) while the message has no AVP at all reads nothing: the usual REGISTER
    # (nathelper's fix_nated_register sets one) skips the PV machinery
    if avp and (ctx.avps or not avp.startswith("$avp(")):
        v = ctx.server.pv.get(ctx, avp)
        if v:
            return str(v)
    return ""


# str() of the sockets REGISTERs arrive on, by id (a socket lives as long as its server; the
# object kept beside its text tells a reused id): the f-string per REGISTER cost ~1,000
_SOCKET_TEXT: Final[dict[int, tuple[object, str]]] = {}


def _socket_text(sock: SocketInfo | None) -> str:
    hit = _SOCKET_TEXT.get(id(sock))
    if hit is not None and hit[0] is sock:
        return hit[1]
    text = str(sock)
    if len(_SOCKET_TEXT) >= 64:
        _SOCKET_TEXT.clear()
    _SOCKET_TEXT[id(sock)] = (sock, text)
    return text


def save(reg: Registrar, ctx: MsgContext, table: str, flags: int, uri: str | None) -> SaveResult:
    req = ctx.request
    p: SaveParams = reg.save_params
    ul = p.usrloc
    hv = save_headers(req)
    callid = hv.callid
    try:
        to = None if uri else req.to
        cseq = req.cseq.number
    except RemoteProtocolError:
        raise errors.parse_error() from None
    if callid is None:
        raise errors.parse_error()
    if len(callid) > MAX_CALLID:
        raise errors.err(errors.CALLID_LEN)
    if to is None:
        aor = aor_of(uri or "", p.use_domain, p.realm_prefix, p.case_sensitive)
    else:
        try:  # the To's own parsed URI: sanity's URI checks have usually parsed it
            to_uri = to.uri
        except RemoteProtocolError:
            raise errors.err(errors.AOR_PARSE) from None
        aor = aor_of_uri(to_uri, p.use_domain, p.realm_prefix, p.case_sensitive)
    hdr_exp = expires_header(hv.expires)
    star, creqs = contacts_of(hv.contact)
    path = ""
    if p.use_path:
        path = path_of(hv.path)
        if path and p.path_mode == 2 and not supports(hv.supported, "path"):
            raise errors.err(errors.PATH_UNSUP)
    d: Domain = ul.domain(table)
    r = _Register(callid, cseq, hdr_exp, star, creqs, path, hv)
    if not p.waits:  # nothing in it waits: no other REGISTER can run meanwhile
        return _update(p, ul, ctx, d, aor, flags, r)
    key = f"{table}\0{aor}"
    locked = reg.aor_locks.acquire(key)  # one REGISTER per AOR at a time (they may wait)
    try:
        return _update(p, ul, ctx, d, aor, flags, r)
    finally:
        if locked:
            reg.aor_locks.release(key)


@dataclass(slots=True, init=False)
class _Register:
    """What save() read from the REGISTER before it looks at the table."""

    callid: str
    cseq: int
    hdr_exp: int | None  # the Expires header
    star: bool  # Contact: *
    creqs: list[ContactReq]
    path: str
    headers: SaveHeaders

    def __init__(
        self,
        callid: str,
        cseq: int,
        hdr_exp: int | None,
        star: bool,
        creqs: list[ContactReq],
        path: str,
        headers: SaveHeaders,
    ) -> None:
        self.callid = callid
        self.cseq = cseq
        self.hdr_exp = hdr_exp
        self.star = star
        self.creqs = creqs
        self.path = path
        self.headers = headers


def _update(
    p: SaveParams, ul: UsrlocApi, ctx: MsgContext, d: Domain, aor: str, flags: int, r: _Register
) -> SaveResult:
    callid, cseq, hdr_exp, path = r.callid, r.cseq, r.hdr_exp, r.path
    try:
        existing = ul.read_bindings(d, aor)  # read only: an update changes a copy
    except UsrlocError as e:
        raise _store_failed(errors.UL_GET, e, aor) from e
    now = ul.now()
    live = [c for c in existing if not c.expired(now)]

    if r.star:
        if hdr_exp != 0:
            raise errors.err(errors.STAR_EXP)
        for c in existing:
            _apply(ul, d, _Op("delete", c), flags, aor)
        return SaveResult(3, aor, [], path, now)
    if not r.creqs:
        return SaveResult(4, aor, live, path, now)

    received = _received(p, ctx, path)
    if len(received) > 255:
        raise errors.err(errors.CONTACT_LEN)
    hv = r.headers
    ua = hv.user_agent[:255] if hv.user_agent is not None else ""
    methods = ALL_METHODS if hv.allow is None else methods_from_allow(hv.allow)
    q_override = ctx.extra.get("reg_q_override")
    sock = _socket_text(ctx.socket)
    cflags = ctx.bflags
    conn_id = ctx.conn_id if ctx.proto != "udp" else -1
    server_id = p.server_id
    ops: list[_Op] = []
    remaining = list(live)
    for cr in r.creqs:
        exp = _expires_for(p, cr, hdr_exp, flags)
        old = next((c for c in existing if _matches(c, cr)), None) if existing else None
        if old is not None and old.callid == callid and not old.expired(now):
            if cseq < old.cseq:
                raise errors.err(errors.INV_CSEQ)
            if cseq == old.cseq:
                if now - old.last_modified <= p.cseq_delay:
                    ops.append(_Op("skip", old))  # a retransmission: answer as before
                    continue
                raise errors.err(errors.INV_CSEQ)
        if exp == 0:
            if old is not None:
                ops.append(_Op("delete", old))
                remaining = [c for c in remaining if c.ruid != old.ruid]
            continue
        c = Contact(
            aor,
            cr.uri,
            now + exp,
            int(q_override) if q_override is not None else (cr.q if cr.q >= 0 else p.default_q),
            callid,
            cseq,
            old.flags if old is not None else 0,
            cflags,
            ua,
            received,
            sock,
            path,
            old.ruid if old is not None else ul.new_ruid(),
            cr.instance,
            cr.reg_id,
            methods,
            server_id,
            conn_id,
            old.keepalive if old is not None else 0,
            now,
        )
        if old is not None and not old.expired(now):
            ops.append(_Op("update", c))
        else:
            if old is not None:
                remaining = [x for x in remaining if x.ruid != old.ruid]
            ops.append(_Op("insert", c))
            remaining.append(c)
    if flags & FLAG_SINGLE:
        keep = next(
            (o.contact for o in reversed(ops) if o.kind in ("insert", "update", "skip")), None
        )
        if keep is not None:
            ops = [o for o in ops if o.kind == "delete" or o.contact.ruid == keep.ruid]
            ops += [
                _Op("delete", c)
                for c in live
                if c.ruid != keep.ruid and all(o.contact.ruid != c.ruid for o in ops)
            ]
    elif p.max_contacts and len(remaining) > p.max_contacts:
        hdrs = (f"Retry-After: {p.retry_after}",) if p.retry_after > 0 else ()
        raise errors.err(errors.TOO_MANY, *hdrs)
    for op in ops:
        _apply(ul, d, op, flags, aor)
    rc = 3
    for o in ops:  # 1 if any inserted, else 2 if any updated (or a retransmission), else 3
        if o.kind == "insert":
            rc = 1
            break
        if o.kind != "delete":
            rc = 2
    if d.db_mode in (0, 3):
        # what was read plus what was written, as Kamailio answers: no second query (memory
        # only: nothing else ran in between, the writes do not wait)
        after = {c.ruid: c for c in existing}
        for o in ops:
            if o.kind == "delete":
                after.pop(o.contact.ruid, None)
            else:
                after[o.contact.ruid] = o.contact
        live_after = [c for c in after.values() if not c.expired(now)]
        return SaveResult(rc, aor, live_after, path, now)
    try:
        bindings = [c for c in d.get(aor) if not c.expired(now)]
    except UsrlocError:
        bindings = [o.contact for o in ops if o.kind != "delete"]
    return SaveResult(rc, aor, bindings, path, now)


def _apply(ul: UsrlocApi, d: Domain, op: _Op, flags: int, aor: str) -> None:
    mem_only = bool(flags & FLAG_MEM_ONLY)
    try:
        if op.kind in ("insert", "update"):
            ul.put_binding(d, op.contact, mem_only)
        elif op.kind == "delete":
            d.remove(op.contact, mem_only=mem_only)
    except UsrlocError as e:
        raise _store_failed(errors.UL_DEL if op.kind == "delete" else errors.UL_FAIL, e, aor) from e


def _store_failed(pair: tuple[int, str], e: UsrlocError, aor: str) -> errors.RegError:
    """500 for a location table that failed; Retry-After when its database is down."""
    log.error("registrar: %s for AOR %s: %s", pair[1], aor, e)
    hdrs = (f"Retry-After: {e.retry_after}",) if e.retry_after else ()
    return errors.RegError(500, pair[1], hdrs)


class Saver:
    """``KSR.registrar.save(table, flags)`` as its binding calls it (``via``): no interpreted
    frame of the module's method per REGISTER; the method stays the reference."""

    def __init__(self, reg: Registrar) -> None:
        self.reg = reg

    def __call__(self, ctx: MsgContext, table: str, flags: int) -> int:
        return save_and_reply(self.reg, ctx, table, flags, None)


def save_and_reply(reg: Registrar, ctx: MsgContext, table: str, flags: int, uri: str | None) -> int:
    """KSR.registrar.save / save_uri: ``save`` and its answer (kept for reg_send_reply with
    FLAG_NO_REPLY): the REGISTER's result code, or -1 (-2 for a 503) when refused."""
    if not ctx.is_request:
        return -1
    try:
        res = save(reg, ctx, table, flags, uri)
    except errors.RegError as err:
        reg.c_rejected.inc()
        hdrs = [
            Header("P-Registrar-Error", err.info),
            *parse_header_text("\r\n".join(err.headers)),
        ]
        if flags & FLAG_NO_REPLY:
            ctx.extra["reg_reply"] = (err.code, hdrs)
        else:
            reply(reg, ctx, err.code, hdrs)
        return -2 if err.code == 503 else -1
    reg.c_accepted.inc()
    hdrs = ok_headers(reg, ctx, res)
    if flags & FLAG_NO_REPLY:
        ctx.extra["reg_reply"] = (200, hdrs)
    else:
        reply(reg, ctx, 200, hdrs)
    return res.rc


def reply(reg: Registrar, ctx: MsgContext, code: int, headers: list[Header]) -> bool:
    """Answer the REGISTER with ``headers`` added (reply lumps for this reply only)."""
    lumps = ctx.reply_lumps
    lumps.extend(headers)
    try:
        return bool(reg.server.send_reply_any(ctx, code, default_reason(code)))
    finally:
        for x in headers:
            lumps.remove(x)


def ok_headers(reg: Registrar, ctx: MsgContext, res: SaveResult) -> list[Header]:
    """The 200 OK's Contact (every binding) and Path headers."""
    now = res.now or reg.usrloc.now()
    p: SaveParams = reg.save_params
    contact = contact_header(res.bindings, now, p.received_param)
    hdrs: list[Header] = [] if contact is None else [contact]
    if (
        res.path
        and p.use_path
        and p.path_mode
        and (p.path_mode == 2 or supports(ctx.request.get_all("supported"), "path"))
    ):
        hdrs.append(Header("Path", res.path))
    return hdrs


def contact_header(bindings: list[Contact], now: float, received_param: str) -> Header | None:
    """The 200 OK's Contact header listing ``bindings`` (None for none)."""
    if not bindings:
        return None
    if len(bindings) == 1:  # the usual REGISTER: no list to join
        value = contact_line(bindings[0], now, received_param)
    else:
        value = ", ".join([contact_line(c, now, received_param) for c in bindings])
    return Header("Contact", value, None, "contact")


def contact_line(c: Contact, now: float, received_param: str) -> str:
    """One binding as the 200 OK lists it."""
    # Whole seconds as Kamailio counts them: a fresh 60 s binding is reported as 60, not 59
    # (the reply is built a few microseconds after the save, and float sums are inexact).
    left = max(0, round(c.expires - now)) if c.expires else 0
    if c.q < 0 and not c.instance and not c.reg_id and not (c.received and received_param):
        return f"<{c.contact}>;expires={left}"  # the usual binding: nothing more to add
    parts = [f"<{c.contact}>;expires={left}"]
    if c.q >= 0:
        parts.append(f";q={_q_text(c.q)}")
    if c.instance:
        parts.append(f";+sip.instance={c.instance}")
    if c.reg_id:
        parts.append(f";reg-id={c.reg_id}")
    if c.received and received_param:
        parts.append(f';{received_param}="{c.received}"')
    return "".join(parts)


def _q_text(q: int) -> str:
    if q >= 1000:
        return "1"
    return f"0.{q:03d}".rstrip("0").rstrip(".") if q else "0"


def check_uri(text: str) -> bool:
    try:
        parse_uri(text)
        return True
    except RemoteProtocolError:
        return False
