"""The sanity checks themselves: pure functions from a message to a failure (or None).

Bit values, status codes and reason phrases are Kamailio's (its sanity module, check by
check). A ``Failure`` with code 0 fails without a reply, where Kamailio marks the message
"no reply" (no Via, From, To, Call-ID or CSeq to answer with, a header its parser refuses).
Kamailio's Via version and Via transport checks always pass (its Via parser decides earlier);
ksr's do too. ``STRICT`` is a ksr extra for the RFC 3261 syntax rules RFC 4475 exercises that
Kamailio's parser enforces elsewhere or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ksr.sip.abnf import is_token, uint
from ksr.sip.auth_header import parse_credentials
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import (
    CSeq,
    NameAddr,
    parse_name_addr,
    parse_params,
    parse_via,
    split_commas,
)
from ksr.sip.message import Message, Request
from ksr.sip.uri import Uri, parse_uri

if TYPE_CHECKING:
    from ksr.core.context import MsgContext

RURI_SIP_VERSION: Final = 1
RURI_SCHEME: Final = 2
REQUIRED_HEADERS: Final = 4
VIA_SIP_VERSION: Final = 8
VIA_PROTOCOL: Final = 16
CSEQ_METHOD: Final = 32
CSEQ_VALUE: Final = 64
CL: Final = 128
EXPIRES_VALUE: Final = 256
PROXY_REQUIRE: Final = 512
PARSE_URIS: Final = 1024
CHECK_DIGEST: Final = 2048
CHECK_DUPTAGS: Final = 4096
CHECK_AUTHORIZATION: Final = 8192
VIA1_HEADER: Final = 16384
RFC3261_COMPLIANCE: Final = (
    32768  # newer Kamailio releases: magic-cookie branch, lr in (Record-)Route
)
STRICT: Final = 1 << 20  # ksr only
ALL_CHECKS: Final = (1 << 16) - 1 | STRICT

DEFAULT_CHECKS: Final = 3047
DEFAULT_URI_CHECKS: Final = 7

URI_RURI: Final = 1
URI_FROM: Final = 2
URI_TO: Final = 4
URI_CONTACT: Final = 8

# URI schemes the parse-URIs check accepts (Kamailio's URI parser knows these).
KNOWN_SCHEMES: Final = frozenset({"sip", "sips", "tel", "tels", "urn"})
# RFC 3261 §7.3.1 / §20: headers a request carries at most once
SINGLE_VALUE: Final = (
    ("call-id", "Call-ID"),
    ("cseq", "CSeq"),
    ("from", "From"),
    ("to", "To"),
    ("max-forwards", "Max-Forwards"),
    ("content-length", "Content-Length"),
    ("content-type", "Content-Type"),
    ("expires", "Expires"),
)
# rfc1123-date = wkday "," SP date1 SP time SP "GMT"  (RFC 3261 §20.17)
DATE_RE: Final = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


@dataclass(slots=True)
class Failure:
    """What a failed check answers: status (0: no reply), reason, extra reply header lines."""

    code: int
    reason: str
    headers: list[str] = field(default_factory=list)


# init=False and __init__ written out: mypyc compiles it, where the generated one runs as
# Python code (a Job per sanity_check call)
@dataclass(slots=True, init=False)
class Job:
    """One sanity_check run: the message, the R-URI as the script sees it, the settings."""

    msg: Message
    ruri: str | None
    proto: str
    uri_checks: int
    proxy_require: frozenset[str]
    # parses shared by the checks of this run (the R-URI, From and To are read by several):
    # text -> result or the error it raised
    uris: dict[str, Uri | RemoteProtocolError] = field(default_factory=dict)
    addrs: dict[tuple[str, bool], NameAddr | RemoteProtocolError] = field(default_factory=dict)
    # the headers in one pass (``index``): the first value of each key, the keys seen twice
    _first: dict[str, str] | None = None
    _dups: set[str] = field(default_factory=set)
    cseq_parts: list[str] | Failure | None = None  # _cseq_parts, shared by both CSeq checks

    def __init__(
        self,
        msg: Message,
        ruri: str | None,
        proto: str,
        uri_checks: int,
        proxy_require: frozenset[str],
        uris: dict[str, Uri | RemoteProtocolError] | None = None,
        addrs: dict[tuple[str, bool], NameAddr | RemoteProtocolError] | None = None,
    ) -> None:
        self.msg = msg
        self.ruri = ruri
        self.proto = proto
        self.uri_checks = uri_checks
        self.proxy_require = proxy_require
        self.uris = {} if uris is None else uris
        self.addrs = {} if addrs is None else addrs
        self._first = None
        self._dups = set()
        self.cseq_parts = None

    def first(self) -> dict[str, str]:
        """The first value of each header key (one pass over the headers, for every check:
        a scan per header name cost more)."""
        first = self._first
        if first is None:
            first = self._first = {}
            dups = self._dups
            for h in self.msg.headers:
                key = h.key
                if key in first:
                    dups.add(key)
                else:
                    first[key] = h.value
        return first

    def dups(self) -> set[str]:
        """The header keys that appear more than once."""
        self.first()
        return self._dups

    def uri(self, text: str) -> Uri:
        """parse_uri(text), parsed once per run; the request's own R-URI is the parse the
        message keeps (``Request.parsed_uri``, shared with everything else that reads it)."""
        msg = self.msg
        if isinstance(msg, Request) and text == msg.uri:
            return msg.parsed_uri
        hit = self.uris.get(text)
        if hit is None:
            try:
                hit = parse_uri(text)
            except RemoteProtocolError as err:
                hit = err
            self.uris[text] = hit
        if isinstance(hit, RemoteProtocolError):
            raise hit
        return hit

    def name_addr(self, value: str, strict: bool = False) -> NameAddr:
        """parse_name_addr(value, strict), parsed once per run."""
        hit = self.addrs.get((value, strict))
        if hit is None:
            try:
                hit = parse_name_addr(value, strict)
            except RemoteProtocolError as err:
                hit = err
            self.addrs[(value, strict)] = hit
        if isinstance(hit, RemoteProtocolError):
            raise hit
        return hit


Check = Callable[[Job], Failure | None]


def _req(job: Job) -> Request | None:
    return job.msg if isinstance(job.msg, Request) else None


def ruri_sip_version(job: Job) -> Failure | None:
    req = _req(job)
    if req is not None and req.version != "SIP/2.0":
        return Failure(505, "Version Not Supported (R-URI)")
    return None


def ruri_scheme(job: Job) -> Failure | None:
    req = _req(job)
    if req is None:
        return None
    facts = uri_facts(job.ruri or req.uri)
    if facts is None:
        return Failure(400, "Bad Request URI")
    if facts[0] not in ("sip", "sips", "tel", "tels"):
        return Failure(416, "Unsupported URI Scheme in Request URI")
    return None


NO_REPLY: Final = Failure(0, "")  # Kamailio fails these silently (the message is marked no-reply)


def required_headers(job: Job) -> Failure | None:
    # one pass with a bit per key: compiled, comparing interned keys costs less than the
    # dict of every header's first value (Job.first)
    seen = 0
    for h in job.msg.headers:
        key = h.key
        if key == "via":
            seen |= 1
            continue
        if key == "from":
            bit = 2
        elif key == "to":
            bit = 4
        elif key == "call-id":
            bit = 8
        elif key == "cseq":
            bit = 16
        else:
            continue
        if seen & bit:
            return NO_REPLY  # Kamailio: "duplicated ... header", failed without a reply
        seen |= bit
    if seen != 31:
        return NO_REPLY  # no transaction quadruple (or no Via): nothing to answer with
    return None


def via1_header(job: Job) -> Failure | None:
    try:
        via = job.msg.top_via
    except RemoteProtocolError:
        return NO_REPLY
    if not via.host:
        return NO_REPLY
    return None


def rfc3261_compliance(job: Job) -> Failure | None:
    """Top Via branch with the magic cookie; ``lr`` in every Record-Route and Route URI."""
    try:
        via = job.msg.top_via
    except RemoteProtocolError:
        return NO_REPLY
    if not (via.branch or "").startswith("z9hG4bK"):
        return NO_REPLY
    for key in ("record-route", "route"):
        for value in job.msg.get_values(key):
            try:
                uri = job.uri(job.name_addr(value).uri_text)
            except RemoteProtocolError:
                return NO_REPLY
            if "lr" not in uri.params:
                return NO_REPLY
    return None


def via_sip_version(job: Job) -> Failure | None:
    return None  # Kamailio: always passes (its Via parser refuses other versions first)


def via_protocol(job: Job) -> Failure | None:
    return None  # Kamailio: always passes (its Via parser refuses unknown transports first)


def _cseq_parts(job: Job) -> list[str] | Failure:
    parts = job.cseq_parts
    if parts is not None:
        return parts
    h = job.msg.first("cseq")
    if h is None:
        parts = NO_REPLY
    else:
        parts = h.value.split()
        if len(parts) > 2 or (len(parts) == 2 and not is_token(parts[1])):
            parts = NO_REPLY  # Kamailio's CSeq parser refuses it: no reply
    job.cseq_parts = parts
    return parts


def _cseq(job: Job) -> CSeq | None:
    """The message's own parse of its CSeq (registrar, tm and dialog read it too: one parse
    for all), or None when it refuses it: the checks then look at the parts themselves
    (_cseq_parts) for Kamailio's answer."""
    try:
        return job.msg.cseq
    except RemoteProtocolError:
        return None


def cseq_method(job: Job) -> Failure | None:
    cseq = _cseq(job)
    if cseq is not None:  # parsed: a number and a method token
        req = _req(job)
        if req is not None and cseq.method != req.method:
            return Failure(400, "CSeq method does not match request method")
        return None
    parts = _cseq_parts(job)
    if isinstance(parts, Failure):
        return parts
    if len(parts) < 2:
        return Failure(400, "Missing method in CSeq header")
    req = _req(job)
    if req is not None and parts[1] != req.method:
        return Failure(400, "CSeq method does not match request method")
    return None


def cseq_value(job: Job) -> Failure | None:
    if _cseq(job) is not None:  # parsed: its number is a 32-bit unsigned integer
        return None
    parts = _cseq_parts(job)
    if isinstance(parts, Failure):
        return parts
    if not parts:
        return Failure(400, "Missing number in CSeq header")
    if uint(parts[0], 2**32 - 1) is None:
        return Failure(400, "CSeq number is illegal")
    return None


def content_length(job: Job) -> Failure | None:
    h = job.msg.first("content-length")
    if h is None:
        return None
    value = h.value
    n = uint(value, 2**32)
    if n is None:
        return Failure(400, "Content-Length Failure")
    if n != len(job.msg.body):
        return Failure(400, "Content-Length mis-match")
    return None


def expires_value(job: Job) -> Failure | None:
    h = job.msg.first("expires")
    if h is None:
        return None
    value = h.value
    if not value:
        return Failure(400, "Missing number in Expires header")
    if not value.isdigit():
        return Failure(400, "Bad Expires Header")  # Kamailio's Expires parser refuses it
    if uint(value, 2**32 - 1) is None:
        return Failure(400, "Expires value is illegal")
    return None


def proxy_require(job: Job) -> Failure | None:
    wanted = job.msg.get_values("proxy-require")
    unknown = [t for t in wanted if t not in job.proxy_require]
    if not unknown:
        return None
    # Kamailio names the first option tag it does not support
    return Failure(420, "Bad Proxy Require Extension", [f"Unsupported: {unknown[0]}"])


# What the URI checks need from a URI text (its scheme, and whether it passes the parse-URIs
# check), remembered per text: the same From, To and R-URI texts come back in every request of
# a call and in every call of a user; parsing them again each time was most of sanity's cost.
_FACTS: Final[dict[str, tuple[str, bool] | None]] = {}
_FACTS_MAX: Final = 4096


def uri_facts(text: str, na: NameAddr | None = None) -> tuple[str, bool] | None:
    """(scheme, passes parse-URIs) of a URI text, or None if it does not parse. ``na``: the
    name-addr ``text`` comes from; a text seen for the first time is parsed through it, so
    its URI stays parsed for whoever reads it next (registrar's AOR, dialog, tm)."""
    # not try/except KeyError: compiled, a miss that raises costs ~4,000 instructions; get
    # first: a known text is one lookup (a second only for a text known not to parse)
    facts = _FACTS.get(text)
    if facts is not None or text in _FACTS:
        return facts
    try:
        uri = parse_uri(text) if na is None else na.uri
    except RemoteProtocolError:
        facts = None
    else:
        facts = (uri.scheme, uri.scheme in KNOWN_SCHEMES and (uri.host != "" or not uri.is_sip))
    if len(_FACTS) >= _FACTS_MAX:
        _FACTS.clear()  # a bounded table: start again rather than grow with every new text
    _FACTS[text] = facts
    return facts


def _uri_ok(job: Job, text: str) -> bool:
    facts = uri_facts(text)
    return facts is not None and facts[1]


def _addr_uri(m: Message, to: bool) -> NameAddr | Failure:
    """parse_uris for the From (``to``: the To): the name-addr, or how the check fails."""
    h = m.first("to" if to else "from")
    if h is None or not h.value:
        return NO_REPLY  # nothing to answer with
    try:  # the message's own parse of its first From/To (tm, dialog... read it too)
        na = m.to if to else m.from_
    except RemoteProtocolError:
        return Failure(400, "Invalid To Header" if to else "Invalid From Header")
    facts = uri_facts(na.uri_text, na)
    if facts is None or not facts[1]:
        return Failure(400, "Invalid To Header" if to else "Invalid From Header")
    return na


def parse_uris(job: Job) -> Failure | None:
    m = job.msg
    req = _req(job)
    if job.uri_checks & URI_RURI and req is not None and not _uri_ok(job, job.ruri or req.uri):
        return Failure(400, "Bad Request URI")
    na_from: NameAddr | None = None
    # From, then To, written out: compiled, a loop over a tuple of tuples was generic calls
    if job.uri_checks & URI_FROM:
        got = _addr_uri(m, False)
        if isinstance(got, Failure):
            return got
        na_from = got
    if job.uri_checks & URI_TO:
        got = _addr_uri(m, True)
        if isinstance(got, Failure):
            return got
        if na_from is not None:
            # a REGISTER's To is usually its From: one parse serves both (registrar reads
            # the To's URI for the AOR)
            got.share_uri(na_from)
    if job.uri_checks & URI_CONTACT:
        values = m.get_values("contact")
        if values and values != ["*"]:
            try:
                first = job.name_addr(values[0])
            except RemoteProtocolError:
                return Failure(400, "Bad Contact Header")
            if not _uri_ok(job, first.uri_text):
                return Failure(400, "Bad Contact URI")
    return None


def _digest(job: Job, other_schemes_ok: bool) -> Failure | None:
    for key in ("authorization", "proxy-authorization"):
        for value in job.msg.get_all(key):
            if value.partition(" ")[0].lower() != "digest":
                # Kamailio: "not applicable"; check_authorization passes, check_digest fails
                # without a reply
                return None if other_schemes_ok else NO_REPLY
            try:
                cred = parse_credentials(value)
            except RemoteProtocolError:
                return Failure(400, "Bad Auth Header")
            p = cred.params
            needed = ("username", "realm", "nonce", "uri", "response")
            if any(p.get(k) is None for k in needed) or (
                p.get("qop") and (p.get("cnonce") is None or p.get("nc") is None)
            ):
                return Failure(400, "Bad Auth Credentials")
            for k, reason in (
                ("username", "Auth Empty User"),
                ("nonce", "Auth Empty Nonce"),
                ("response", "Auth Empty Response"),
            ):
                if not p.get(k):
                    return Failure(400, reason)
    return None


def check_digest(job: Job) -> Failure | None:
    return _digest(job, False)


def check_authorization(job: Job) -> Failure | None:
    return _digest(job, True)


def duptags(job: Job) -> Failure | None:
    for key, name in (("from", "From"), ("to", "To")):
        value = job.msg.get(key)
        if value is None:
            return NO_REPLY
        try:  # the message's own parse, as in parse_uris
            na = job.msg.from_ if key == "from" else job.msg.to
        except RemoteProtocolError:
            return NO_REPLY  # Kamailio: From/To do not parse, failed without a reply
        if na.tag is not None and _count_tags(value) > 1:
            return Failure(400, f"Many {name} Tag Params")
    return None


def _count_tags(value: str) -> int:
    # parameters after the address: after '>' for name-addr, else after the first ';'
    gt = value.rfind(">")
    tail = value[gt + 1 :] if gt >= 0 else value.partition(";")[2]
    return sum(1 for p in tail.split(";") if p.partition("=")[0].strip().lower() == "tag")


def strict(job: Job) -> Failure | None:
    """RFC 3261 syntax beyond Kamailio's checks (ksr only, bit 1<<20)."""
    m = job.msg
    dups = job.dups()
    for key, name in SINGLE_VALUE:
        if key in dups:
            return Failure(400, f"Duplicate {name} header")
    req = _req(job)
    if req is not None:
        try:
            uri = job.uri(job.ruri or req.uri)
        except RemoteProtocolError:
            return Failure(400, "Bad Request URI")
        if uri.is_sip and uri.headers is not None:
            return Failure(400, "Bad Request URI (headers not allowed)")
    for key, name in (("from", "From"), ("to", "To")):
        value = m.get(key)
        if value is not None:
            try:
                job.name_addr(value, strict=True)
            except RemoteProtocolError as err:
                return Failure(400, f"Malformed {name} header ({err.reason})")
    for value in m.get_all("contact"):
        for item in split_commas(value):
            if item == "*" and value.strip() == "*" and "contact" not in dups:
                continue  # "Contact: *" stands alone (RFC 3261 §10.2.2)
            try:
                if not item or item == "*":
                    raise RemoteProtocolError("empty value")
                parse_name_addr(item, strict=True)
            except RemoteProtocolError as err:
                return Failure(400, f"Malformed Contact header ({err.reason})")
    for value in m.get_all("via"):
        for item in split_commas(value):
            try:
                if not item:
                    raise RemoteProtocolError("empty value")
                parse_via(item, strict=True)
            except RemoteProtocolError as err:
                return Failure(400, f"Malformed Via header ({err.reason})")
    mf = m.get_all("max-forwards")
    if mf and uint(mf[0], 255) is None:
        return Failure(400, "Max-Forwards value is illegal")
    for value in m.get_all("date"):
        if not DATE_RE.fullmatch(value):
            return Failure(400, "Malformed Date header")
    ct = m.get("content-type")
    if ct is not None:
        mtype, _, ptext = ct.partition(";")
        top, slash, sub = mtype.strip().partition("/")
        if not slash or not is_token(top.strip()) or not is_token(sub.strip()):
            return Failure(400, "Malformed Content-Type header")
        try:
            parse_params(ptext, strict=True)
        except RemoteProtocolError:
            return Failure(400, "Malformed Content-Type header")
    return None


# Kamailio's order of evaluation (sanity_mod.c), then the ksr extra; run_checks calls them
# in this order (tests/test_sanity.py compares the two).
CHECKS: Final[tuple[tuple[int, Check, bool], ...]] = (
    # (bit, check, applies to replies too)
    (RURI_SIP_VERSION, ruri_sip_version, False),
    (RURI_SCHEME, ruri_scheme, False),
    (REQUIRED_HEADERS, required_headers, True),
    (VIA1_HEADER, via1_header, True),
    (RFC3261_COMPLIANCE, rfc3261_compliance, True),
    (VIA_SIP_VERSION, via_sip_version, True),
    (VIA_PROTOCOL, via_protocol, False),
    (CSEQ_METHOD, cseq_method, False),
    (CSEQ_VALUE, cseq_value, True),
    (CL, content_length, True),
    (EXPIRES_VALUE, expires_value, True),
    (PROXY_REQUIRE, proxy_require, False),
    (PARSE_URIS, parse_uris, True),
    (CHECK_DIGEST, check_digest, False),
    (CHECK_AUTHORIZATION, check_authorization, False),
    (CHECK_DUPTAGS, duptags, True),
    (STRICT, strict, True),
)


def run_checks(job: Job, msg_checks: int) -> Failure | None:
    """The first failing check among ``msg_checks``, in Kamailio's order (``CHECKS``). Each
    check is called by name: compiled, that is a C call, where one taken from a table is a
    generic call of a Python object."""
    req = job.msg.is_request
    f: Failure | None
    if req and msg_checks & RURI_SIP_VERSION and (f := ruri_sip_version(job)) is not None:
        return f
    if req and msg_checks & RURI_SCHEME and (f := ruri_scheme(job)) is not None:
        return f
    if msg_checks & REQUIRED_HEADERS and (f := required_headers(job)) is not None:
        return f
    if msg_checks & VIA1_HEADER and (f := via1_header(job)) is not None:
        return f
    if msg_checks & RFC3261_COMPLIANCE and (f := rfc3261_compliance(job)) is not None:
        return f
    # VIA_SIP_VERSION and VIA_PROTOCOL always pass
    if req and msg_checks & CSEQ_METHOD and (f := cseq_method(job)) is not None:
        return f
    if msg_checks & CSEQ_VALUE and (f := cseq_value(job)) is not None:
        return f
    if msg_checks & CL and (f := content_length(job)) is not None:
        return f
    if msg_checks & EXPIRES_VALUE and (f := expires_value(job)) is not None:
        return f
    if req and msg_checks & PROXY_REQUIRE and (f := proxy_require(job)) is not None:
        return f
    if msg_checks & PARSE_URIS and (f := parse_uris(job)) is not None:
        return f
    if req and msg_checks & CHECK_DIGEST and (f := check_digest(job)) is not None:
        return f
    if req and msg_checks & CHECK_AUTHORIZATION and (f := check_authorization(job)) is not None:
        return f
    if msg_checks & CHECK_DUPTAGS and (f := duptags(job)) is not None:
        return f
    if msg_checks & STRICT and (f := strict(job)) is not None:
        return f
    return None


FAILURE_KEY: Final = "sanity_failure"  # ctx.extra: the last failed check of the message


class Checker:
    """``KSR.sanity.sanity_check(msg_checks, uri_checks)`` compiled: its binding calls this
    (``@kemi(via=...)``), the module's method stays the reference. A failure goes to the
    module's ``failed`` (counted, logged, answered) and its answer is the call's."""

    def __init__(
        self, supported: frozenset[str], failed: Callable[[MsgContext, Failure], int]
    ) -> None:
        self.supported = supported
        self.failed = failed

    def __call__(self, ctx: MsgContext, msg_checks: int, uri_checks: int) -> int:
        ctx.extra.pop(FAILURE_KEY, None)
        job = Job(ctx.msg, ctx.ruri, ctx.proto, uri_checks, self.supported)
        failure = run_checks(job, msg_checks & ALL_CHECKS)
        if failure is None:
            return 1
        return self.failed(ctx, failure)
