"""Building replies and forwarded requests (RFC 3261 §8.2.6, §16.6, §16.7, RFC 3581): the
proxy's building blocks, sans-IO, used by the core's stateless paths and by tm alike."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterable
from typing import Final

from .headers import Via, format_params, split_commas
from .hostport import bracket_host
from .message import Header, Request, Response
from .owner import VIA_MARK

BRANCH_COOKIE: Final = "z9hG4bK"
# a C static when compiled: ``hashlib.blake2b`` is a module attribute read per stateless forward
_blake2b: Final = hashlib.blake2b
_crc32: Final = zlib.crc32  # compiled: a static, not the module's attribute per call

REASONS: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


# The lines a local reply repeats, made once: a join costs ~600 instructions compiled.
_STATUS_LINES: Final[dict[int, str]] = {
    code: f"SIP/2.0 {code} {reason}" for code, reason in REASONS.items()
}
_EMPTY_LENGTH: Final = Header("Content-Length", "0", None, "content-length")  # never changed
# a Server value (the configuration's) -> its Header and its line
_SERVER: Final[dict[str, tuple[Header, str]]] = {}


def _status_line(status: int, reason: str) -> str:
    line = _STATUS_LINES.get(status)
    if line is not None and len(line) == len(reason) + 12 and line.endswith(reason):
        return line  # "SIP/2.0 NNN " and the usual reason
    return "".join(("SIP/2.0 ", str(status), " ", reason))


def _server_header(value: str) -> tuple[Header, str]:
    made = _SERVER.get(value)
    if made is None:
        made = (Header("Server", value, None, "server"), "Server: " + value)
        if len(_SERVER) < 8:  # one value in practice: bounded all the same
            _SERVER[value] = made
    return made


def default_reason(status: int) -> str:
    return REASONS.get(status) or REASONS.get(status // 100 * 100, "Unknown")


def make_to_tag(req: Request, secret: str = "") -> str:
    """A To-tag that is the same for retransmissions of one request (so a stateless
    reply to a retransmission carries the same tag)."""
    return to_tag_of(secret, req.get("call-id"), req.get("from"), req.get("cseq"))


def to_tag_of(secret: str, call_id: str | None, from_: str | None, cseq: str | None) -> str:
    """``make_to_tag`` from the request's first Call-ID, From and CSeq values: ``secret``
    then their CRC-32 in decimal, as Kamailio's sl tags are a fixed prefix and a CRC of the
    request's identity. The same for a retransmission (in any worker and after a restart
    when ``secret`` is); a tag needs no secrecy, and the Call-ID and From-tag the CRC covers
    already make each dialog's identity unique. (Decimal: compiled, str() of an int is
    native, hex() a call into the interpreter.)"""
    seed = "|".join((call_id or "", from_ or "", cseq or ""))
    return secret + str(_crc32(seed.encode("utf-8", "surrogateescape")))


def make_reply(
    req: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra_headers: Iterable[Header | tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    server_header: str | None = None,
    contacts: Iterable[str] = (),
) -> Response:
    """The reply a proxy or a UAS makes to ``req`` (stateless or in a transaction): Via,
    From, To, Call-ID and CSeq copied in order (the top Via with received=/rport= when the
    request has a ``via_fix``); a To-tag added for non-100 replies when the request has
    none; then Server, ``extra_headers`` (the reply lumps: Headers or (name, value) pairs),
    Content-Type, ``Contact: <uri>`` for each of ``contacts`` (a 3xx's destination set) and
    Content-Length."""
    # reply_message's one pass over the request, its bytes dropped: this Response is for
    # callers that may still change it (the tests' user agents)
    lumps = (
        [x if isinstance(x, Header) else Header(x[0], x[1]) for x in extra_headers]
        if extra_headers
        else []
    )
    rpl = reply_message(
        req,
        status,
        reason if reason is not None else default_reason(status),
        to_tag,
        lumps,
        body,
        content_type,
        server_header,
        list(contacts) if contacts else None,
    )
    rpl.raw = None
    return rpl


def reply_bytes(
    req: Request,
    status: int,
    reason: str,
    to_tag: str | None,
    lumps: list[Header],
    body: bytes = b"",
    content_type: str | None = None,
    server_header: str | None = None,
    contacts: list[str] | None = None,
) -> bytes:
    """``make_reply(...).to_bytes()`` written in one pass, for a reply that is only sent (sl,
    the registrar's 200, tm's local replies): the lines are joined straight from the
    request's, no Header or Response is made. ``lumps``: the reply lumps (``extra_headers``)."""
    fix = req.via_fix
    original = fix.original if fix is not None else None
    lines: list[str] = [_status_line(status, reason)]
    call_id: str | None = None
    from_: str | None = None
    cseq: str | None = None
    untagged: list[int] = []  # the lines of To headers without a tag
    to_headers: list[Header] = []  # and those headers
    for h in req.headers:
        key = h.key
        # the headers a reply copies (RFC 3261 §8.2.6.2), compared as literals: compiled,
        # cheaper than a set's lookup
        if key == "via":
            if h is original and fix is not None:
                h = fix.sent  # received=/rport= (RFC 3261 §18.2.1)
        elif key == "to":
            # as make_reply's test, with the usual answers first: no parameter at all, or
            # ";tag=" written plainly
            v = h.value
            if (
                status > 100
                and ";tag=" not in v
                and (";" not in v or ";tag=" not in v.replace(" ", "").lower())
            ):
                untagged.append(len(lines))
                to_headers.append(h)
        elif key == "call-id":
            if call_id is None:
                call_id = h.value
        elif key == "from":
            if from_ is None:
                from_ = h.value
        elif key == "cseq":
            if cseq is None:
                cseq = h.value
        else:
            continue
        raw = h.raw
        lines.append(raw if raw is not None else "".join((h.name, ": ", h.value)))
    if untagged:
        tag = to_tag or to_tag_of("", call_id, from_, cseq)
        for k in range(len(untagged)):
            h = to_headers[k]
            lines[untagged[k]] = "".join((h.name, ": ", h.value, ";tag=", tag))
    if server_header:
        lines.append(_server_header(server_header)[1])
    for h in lumps:
        raw = h.raw
        lines.append(raw if raw is not None else "".join((h.name, ": ", h.value)))
    if body and content_type:
        lines.append("Content-Type: " + content_type)
    if contacts:
        for uri in contacts:
            lines.append("".join(("Contact: <", uri, ">")))
    lines.append("Content-Length: " + str(len(body)) if body else "Content-Length: 0")
    lines.append("\r\n")  # the blank line that ends the head
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    return head + body if body else head


def reply_message(
    req: Request,
    status: int,
    reason: str,
    to_tag: str | None,
    lumps: list[Header],
    body: bytes = b"",
    content_type: str | None = None,
    server_header: str | None = None,
    contacts: list[str] | None = None,
) -> Response:
    """``make_reply`` for a reply that is sent at once (tm's local replies, its 100 Trying):
    the same Response, with ``raw`` its bytes (``reply_bytes``) made in the same pass over
    the request's headers, so sending it serialises nothing. Header changes made through
    the Message methods afterwards drop ``raw``, as for a parsed message."""
    fix = req.via_fix
    original = fix.original if fix is not None else None
    headers: list[Header] = []
    lines: list[str] = [_status_line(status, reason)]
    call_id: str | None = None
    from_: str | None = None
    cseq: str | None = None
    untagged: list[int] = []  # where To headers without a tag are (in headers; +1 in lines)
    for h in req.headers:
        key = h.key
        if key == "via":  # the copied headers as literals, as in reply_bytes
            if h is original and fix is not None:
                h = fix.sent  # received=/rport= (RFC 3261 §18.2.1)
        elif key == "to":
            v = h.value
            if (
                status > 100
                and ";tag=" not in v
                and (";" not in v or ";tag=" not in v.replace(" ", "").lower())
            ):
                untagged.append(len(headers))
        elif key == "call-id":
            if call_id is None:
                call_id = h.value
        elif key == "from":
            if from_ is None:
                from_ = h.value
        elif key == "cseq":
            if cseq is None:
                cseq = h.value
        else:
            continue
        headers.append(h)
        raw = h.raw
        lines.append(raw if raw is not None else "".join((h.name, ": ", h.value)))
    if untagged:
        tag = to_tag or to_tag_of("", call_id, from_, cseq)
        for i in untagged:
            h = headers[i]
            t = Header(h.name, "".join((h.value, ";tag=", tag)), None, "to")
            headers[i] = t
            lines[i + 1] = "".join((t.name, ": ", t.value))
    if server_header:
        h, line = _server_header(server_header)
        headers.append(h)
        lines.append(line)
    for h in lumps:
        headers.append(h)
        raw = h.raw
        lines.append(raw if raw is not None else "".join((h.name, ": ", h.value)))
    if body and content_type:
        headers.append(Header("Content-Type", content_type, None, "content-type"))
        lines.append("Content-Type: " + content_type)
    if contacts:
        for uri in contacts:
            value = "".join(("<", uri, ">"))
            headers.append(Header("Contact", value, None, "contact"))
            lines.append("Contact: " + value)
    if body:
        length = str(len(body))
        headers.append(Header("Content-Length", length, None, "content-length"))
        lines.append("Content-Length: " + length)
    else:
        headers.append(_EMPTY_LENGTH)
        lines.append("Content-Length: 0")
    lines.append("\r\n")  # the blank line that ends the head
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    rpl = Response(status, reason, headers, body)
    rpl.raw = head + body if body else head
    return rpl


def new_branch(seed: str | None = None) -> str:
    """An RFC 3261 branch: the magic cookie and a value unique in space and time (or a
    stable hash of ``seed``, so a stateless proxy gives retransmissions the same branch)."""
    if seed is None:
        return BRANCH_COOKIE + os.urandom(10).hex()
    return (
        BRANCH_COOKIE
        + _blake2b(seed.encode("utf-8", "surrogateescape"), digest_size=10).hexdigest()
    )


def stateless_branch(req: Request) -> str:
    """Branch for a stateless forward: derived from the received top Via branch (RFC 3261
    §16.11) or, without one, from the fields that identify the transaction."""
    via = req.top_via
    b = via.branch
    if b and b.startswith(BRANCH_COOKIE) and len(b) > len(BRANCH_COOKIE):
        return new_branch("sl|" + b + "|" + via.host)
    return new_branch(
        f"sl|{req.uri}|{req.get('call-id')}|{req.get('from')}|{req.get('to')}|{req.get('cseq')}|{via}"
    )


def make_via(
    proto: str,
    host: str,
    port: int | str,
    branch: str,
    *,
    rport: bool = False,
    worker: int | None = None,
    params: dict[str, str | None] | None = None,
) -> str:
    """The Via value a request we send carries (RFC 3261 §16.6 step 8): ``SIP/2.0/UDP
    host:port;branch=...``, with an empty ``;rport`` asking for RFC 3581, then ``params``
    (None: a parameter without a value; they never replace branch or rport), and last
    ``;ksrw=N`` when worker processes share the port (the reply comes back to worker N)."""
    if not params:
        # the usual Via (every relayed request and ACK): one f-string, no dict of parameters
        # formatted by a generator (about half the instructions compiled)
        tail = ";rport" if rport else ""
        if worker is not None:
            tail = f"{tail};{VIA_MARK}={worker}"
        return f"SIP/2.0/{proto.upper()} {bracket_host(host)}:{port};branch={branch}{tail}"
    out: dict[str, str | None] = {"branch": branch}
    if rport:
        out["rport"] = None
    if params:
        for name, value in params.items():
            out.setdefault(name, value)
    if worker is not None:
        out[VIA_MARK] = str(worker)
    return f"SIP/2.0/{proto.upper()} {bracket_host(host)}:{port}{format_params(out)}"


def without_top_via(headers: list[Header]) -> list[Header]:
    """The headers of a reply to pass upstream: the first Via value (ours) removed, the
    header line gone when it held only that one (RFC 3261 §16.7 step 3)."""
    return without_first_values(headers, "via")


def reply_upstream(rpl: Response) -> Response:
    """``rpl`` as it goes upstream: without our (top) Via value (RFC 3261 §16.7 step 3).
    When ``rpl`` still has the bytes it was parsed from and our Via is on its first header
    line (the usual case), those bytes with that line cut out, or replaced by the values
    left on it (a peer that wrote every Via on one line), are the new reply's ``raw``:
    nothing else is serialised again (``to_bytes`` returns them)."""
    hdrs = rpl.headers
    kept = without_top_via(hdrs)
    out = Response(rpl.status, rpl.reason, kept, rpl.body, rpl.version)
    raw = rpl.raw
    if raw is None or not hdrs:
        return out
    first = hdrs[0]
    line = first.raw
    if first.key != "via" or line is None:
        return out
    if len(kept) < len(hdrs):
        left = b""  # the line held our Via only
    elif kept and kept[0] is not first:
        h = kept[0]  # the line's other values, written as to_bytes writes a new Header
        left = f"{h.name}: {h.value}\r\n".encode("utf-8", "surrogateescape")
    else:
        return out
    # the status line as to_bytes writes it, in as many bytes as characters
    start = len(rpl.version) + len(rpl.reason) + 5
    out.raw = _replace_line(raw, start, line.encode("utf-8", "surrogateescape"), left)
    return out


def _replace_line(raw: bytes, start: int, line: bytes, new: bytes) -> bytes | None:
    """``raw`` with ``line`` replaced by ``new`` (a whole line with its CRLF, or nothing)
    when the first line of ``raw`` is ``start`` bytes long and ``line`` comes right after
    it, both ended by CRLF; else None. The bytes are checked, not assumed from the parse: a
    status line without a reason or with non-ASCII characters, or bare LF line ends there,
    leave ``raw`` alone. (No search for the first CRLF: the parse split the first line at
    its first line end, which holds the only LF up to there, so a CRLF at ``start`` is that
    end. ``bytes.find`` is a generic method call compiled.)"""
    a = start + 2
    b = a + len(line)
    if raw[start:a] != b"\r\n" or raw[a:b] != line or raw[b : b + 2] != b"\r\n":
        return None
    if not new:
        return raw[:a] + raw[b + 2 :]
    return b"".join((raw[:a], new, raw[b + 2 :]))


def without_first_values(headers: list[Header], key: str, count: int = 1) -> list[Header]:
    """A copy of ``headers`` without the first ``count`` values of the comma-separated
    header ``key`` (a header line left without values is dropped): our Via off a reply, the
    Routes loose routing consumed."""
    if count <= 0:
        return list(headers)
    for i, h in enumerate(headers):  # the usual case first: one value on the first line
        if h.key == key:
            if count == 1 and "," not in h.value:
                return headers[:i] + headers[i + 1 :]
            break
    out: list[Header] = []
    left = count
    for i, h in enumerate(headers):
        if h.key != key:
            out.append(h)
            continue
        values = split_commas(h.value) if "," in h.value else [h.value]
        drop = min(left, len(values))
        left -= drop
        if drop < len(values):
            out.append(Header(h.name, ", ".join(values[drop:])))
        if left <= 0:
            out.extend(headers[i + 1 :])
            break
    return out


def via_destination(via: Via, proto: str | None = None) -> tuple[str, str, int]:
    """Where a reply to this Via goes (RFC 3261 §18.2.2, RFC 3581): (transport, host, port)
    from received= and rport= when present, else its sent-by; the transport is the Via's,
    or ``proto`` when given one and the Via names none."""
    host = via.params.get("received") or via.host
    rport = via.params.get("rport")
    port = int(rport) if rport and rport.isdigit() else (via.port or 5060)
    transport = via.transport.lower() if via.transport or proto is None else proto
    return transport, host, port
