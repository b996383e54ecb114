"""Reading a REGISTER (RFC 3261 §10.3): the AOR, the Expires header, and every Contact with
its expires, q, instance and reg-id. Anything malformed raises RegError (400) before anything
is stored."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import NameAddr, parse_name_addr, split_commas
from ksr.sip.message import Request
from ksr.sip.uri import Uri, parse_uri

from . import errors

_Q_RE: Final = re.compile(r"(0(\.\d{0,3})?|1(\.0{0,3})?)")
MAX_CONTACT: Final = 255
MAX_CALLID: Final = 255


@dataclass(slots=True, init=False)
class ContactReq:
    uri: str
    expires: int | None  # the contact's expires parameter, if any
    q: int  # q*1000, -1 = none
    instance: str
    reg_id: int
    params: dict[str, str | None]

    # init=False and __init__ written out: mypyc compiles it (the generated one runs as Python)
    def __init__(
        self,
        uri: str,
        expires: int | None,
        q: int,
        instance: str,
        reg_id: int,
        params: dict[str, str | None],
    ) -> None:
        self.uri = uri
        self.expires = expires
        self.q = q
        self.instance = instance
        self.reg_id = reg_id
        self.params = params


def aor_of(
    uri_text: str, use_domain: bool, realm_prefix: str = "", case_sensitive: bool = True
) -> str:
    """``user`` or ``user@domain`` of a URI (RFC 3261 §10.3 step 5: the canonical AOR)."""
    try:
        u = parse_uri(uri_text.strip().strip("<>"))
    except RemoteProtocolError:
        raise errors.err(errors.AOR_PARSE) from None
    return aor_of_uri(u, use_domain, realm_prefix, case_sensitive)


def aor_of_uri(
    u: Uri, use_domain: bool, realm_prefix: str = "", case_sensitive: bool = True
) -> str:
    """aor_of() of a parsed URI (a REGISTER's To: sanity has usually parsed it already)."""
    user = u.user if u.user is not None else ""
    if not user:
        raise errors.err(errors.TO_USER)
    if "%" in user:  # unquote's keyword argument costs a dict per call: most users need none
        try:
            user = unquote(user, errors="strict")
        except UnicodeDecodeError:
            raise errors.RegError(400, "Error while unescaping username") from None
    if not case_sensitive:
        user = user.lower()
    if not use_domain:
        return user
    host = u.host
    if realm_prefix and host.startswith(realm_prefix):
        host = host[len(realm_prefix) :]
    return f"{user}@{host}"


class SaveHeaders:
    """The headers save() reads, gathered in one pass over the request (a scan per name cost
    more): the first value of those it reads once, every value in order of the others."""

    def __init__(self) -> None:
        self.callid: str | None = None
        self.expires: str | None = None
        self.user_agent: str | None = None
        self.contact: list[str] = []
        self.allow: list[str] | None = None  # None: no Allow header (every method)
        self.path: list[str] = []
        self.supported: list[str] = []


def save_headers(req: Request) -> SaveHeaders:
    """The values of the headers save() reads (compiled: each key compared with literals,
    the usual REGISTER's header keys being interned, no set or dict per request)."""
    out = SaveHeaders()
    for h in req.headers:
        key = h.key
        if key == "contact":
            out.contact.append(h.value)
        elif key == "call-id":
            if out.callid is None:
                out.callid = h.value
        elif key == "expires":
            if out.expires is None:
                out.expires = h.value
        elif key == "user-agent":
            if out.user_agent is None:
                out.user_agent = h.value
        elif key == "allow":
            if out.allow is None:
                out.allow = [h.value]
            else:
                out.allow.append(h.value)
        elif key == "path":
            out.path.append(h.value)
        elif key == "supported":
            out.supported.append(h.value)
    return out


def expires_header(value: str | None) -> int | None:
    """The first Expires header's value (None: no Expires header)."""
    if value is None:
        return None
    v = value.strip()
    if not v.isdigit():
        raise errors.err(errors.PARSE_EXP)
    return min(int(v), 2**32 - 1)


def parse_q(text: str | None) -> int:
    if text is None:
        return -1
    t = text.strip()
    if not _Q_RE.fullmatch(t):
        raise errors.err(errors.INV_Q)
    return int(round(float(t) * 1000))


def contacts_of(headers: Sequence[str]) -> tuple[bool, list[ContactReq]]:
    """(star, contacts) of the Contact header values. ``Contact: *`` gives (True, [])."""
    values = [x for v in headers for x in split_commas(v)]  # each stripped
    if "*" in values:
        if len(values) != 1:
            raise errors.err(errors.STAR_CONT)
        return True, []
    out: list[ContactReq] = []
    for v in values:
        if not v:
            raise errors.err(errors.PARSE_CONT)
        try:
            na: NameAddr = parse_name_addr(v, strict=True)
            u = na.uri
        except RemoteProtocolError:
            raise errors.err(errors.PARSE_CONT) from None
        if u.is_sip and not u.host:
            raise errors.err(errors.PARSE_CONT)
        if len(na.uri_text) > MAX_CONTACT:
            raise errors.err(errors.CONTACT_LEN)
        params = na.params
        if not params:  # the usual contact: no parameter to read
            out.append(ContactReq(na.uri_text, None, -1, "", 0, params))
            continue
        exp_text = params.get("expires")
        expires: int | None = None
        if "expires" in params:
            if exp_text is None or not exp_text.strip().isdigit():
                raise errors.err(errors.INV_EXP)
            expires = min(int(exp_text), 2**32 - 1)
        q = parse_q(params.get("q")) if "q" in params else -1
        instance = params.get("+sip.instance") or ""
        rid_text = params.get("reg-id")
        if rid_text is not None and not rid_text.isdigit():
            raise errors.err(errors.INV_REGID)
        out.append(ContactReq(na.uri_text, expires, q, instance, int(rid_text or 0), params))
    return False, out


def path_of(headers: Sequence[str]) -> str:
    """The Path header values in order (RFC 3327), checked, joined with commas."""
    parts: list[str] = []
    for v in headers:
        for p in split_commas(v):
            try:
                na = parse_name_addr(p)
                parse_uri(na.uri_text)
            except RemoteProtocolError:
                raise errors.err(errors.PARSE_PATH) from None
            parts.append(p.strip())
    return ",".join(parts)


def supports(headers: Sequence[str], option: str) -> bool:
    """Whether the Supported header values name ``option``."""
    for v in headers:
        if any(t.strip().lower() == option for t in split_commas(v)):
            return True
    return False
