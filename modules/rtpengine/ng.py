"""rtpengine's ng control protocol, sans-IO: the flags string a script passes, turned into the
command dictionary; the datagram with its cookie; the relay's answer checked and read.

A command datagram is ``<cookie> <bencoded dictionary>``; the answer repeats the cookie. The
flags string is Kamailio's: space-separated words, ``key=value`` pairs, with the same special
cases (``replace-origin`` goes into the ``replace`` list, ``RTP/AVP`` sets the transport
protocol, ``via-branch=1`` names a Via, ``force-answer`` turns an offer into an answer...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .bencode import BencodeError, decode_untrusted, encode

# the ng command names, by the operation a KSR function asks for
OFFER, ANSWER, DELETE, QUERY, PING = "offer", "answer", "delete", "query", "ping"

# rtpengine answers these when it cannot take one more call: try the next relay
RETRY_ELSEWHERE = ("load limit",)
RETRY_ERRORS = ("Parallel session limit reached", "Ran out of ports")

_SUBLISTS = {
    "replace": "replace",
    "SDES": "SDES",
    "T38": "T.38",
    "T.38": "T.38",
    "rtcp-mux": "rtcp-mux",
}
_CODEC = {
    "transcode": "transcode",
    "codec-transcode": "transcode",
    "codec-strip": "strip",
    "codec-offer": "offer",
    "codec-mask": "mask",
    "codec-set": "set",
    "codec-except": "except",
    "codec-accept": "accept",
    "codec-consume": "consume",
}
_TRANSPORTS = {
    "RTP/AVP": "RTP/AVP",
    "RTP/SAVP": "RTP/SAVP",
    "RTP/AVPF": "RTP/AVPF",
    "RTP/SAVPF": "RTP/SAVPF",
    "UDP/TLS/RTP/SAVP": "UDP/TLS/RTP/SAVP",
    "UDP/TLS/RTP/SAVPF": "UDP/TLS/RTP/SAVPF",
}
# RTP clears the SAVP bit, AVP the AVPF bit, SRTP/AVPF/DTLS set theirs: (clear, set)
_PROFILE_BITS = {"RTP": (1, 0), "AVP": (2, 0), "SRTP": (0, 1), "AVPF": (0, 2), "DTLS": (0, 4)}
# the RTP/SRTP/AVP/AVPF words combine into a profile name (bit 0 SAVP, bit 1 AVPF, bit 2 DTLS)
_PROFILE = {
    0: "RTP/AVP",
    1: "RTP/SAVP",
    2: "RTP/AVPF",
    3: "RTP/SAVPF",
    4: "UDP/TLS/RTP/SAVP",
    6: "UDP/TLS/RTP/SAVPF",
}


class NgError(ValueError):
    """A flags string or a relay answer that cannot be used; the message says why."""


@dataclass(slots=True)
class MessageFacts:
    """What a command takes from the SIP message being routed."""

    call_id: str
    from_tag: str
    to_tag: str | None
    is_request: bool
    src_ip: str
    sdp: bytes | None = None
    vias: list[str] = field(default_factory=list)  # branch parameter of each Via, top first


@dataclass(slots=True)
class Command:
    op: str
    body: dict[str, Any]

    @property
    def call_id(self) -> str:
        return str(self.body.get("call-id", ""))


def build_command(op: str, flags: str | None, facts: MessageFacts) -> Command:
    """The ng dictionary for ``op`` on this message, with Kamailio's reading of ``flags``
    (None: the function was called without flags, so no ``received-from`` either)."""
    d: dict[str, Any] = {"supports": ["load limit"]}
    words: list[str] = []
    lists: dict[str, list[str]] = {}
    codec: dict[str, list[str]] = {}
    directions: list[str] = []
    transport = -1  # no transport flag given
    call_id, from_tag, to_tag = facts.call_id, facts.from_tag, facts.to_tag
    via = 0
    directional = False
    with_to_tag = op != DELETE  # a delete names the whole call unless to-tag is given
    for word in (flags or "").split():
        key, eq, val = word.partition("=")
        value = val if eq else None
        if key == "received-from" and value:
            d["received-from"] = [_family(value), value]
            continue
        prefix, dash, rest = key.partition("-")
        if prefix in _SUBLISTS and dash and value is None:  # replace-origin
            lists.setdefault(_SUBLISTS[prefix], []).append(rest)
            continue
        if key in _SUBLISTS and value is not None:  # replace=origin
            lists.setdefault(_SUBLISTS[key], []).append(value)
            continue
        name = next((c for c in _CODEC if key.startswith(c + "-") or key == c), None)
        if name is not None:
            item = key[len(name) + 1 :] if key != name else (value or "")
            if not item:
                raise NgError(f"flag {word!r} names no codec")
            codec.setdefault(_CODEC[name], []).append(item)
            continue
        if key in _PROFILE_BITS and value is None:
            clear, add = _PROFILE_BITS[key]
            transport = (max(transport, 0) & ~clear) | add
            continue
        if key in _TRANSPORTS and value is None:
            d["transport-protocol"] = _TRANSPORTS[key]
            continue
        if key == "TOS" and value is not None:
            d["TOS"] = _int(word, value)
        elif key == "to-tag":
            to_tag = value if value is not None else to_tag
            with_to_tag = True
        elif key == "from-tag":
            from_tag = _need(word, value)
            directional = True
        elif key == "call-id":
            call_id = _need(word, value)
        elif key in ("internal", "external") and value is None:
            directions.append(key)
        elif key == "direction":
            directions.append(_need(word, value))
        elif key == "via-branch":
            via = _via_choice(word, _need(word, value), facts.is_request)
        elif key == "repacketize":
            d["repacketize"] = _int(word, _need(word, value))
        elif key == "directional" and value is None:
            directional = True
        elif key == "delete-delay" and value is not None:
            d["delete delay"] = _int(word, value)
        elif key == "force-answer" and value is None:
            if op != OFFER:
                raise NgError("force-answer is for offers only")
            op = ANSWER
        elif value is None:
            words.append(key)
        else:
            d[key] = value
    if transport >= 0 and "transport-protocol" not in d:
        d["transport-protocol"] = _PROFILE.get(transport, "RTP/AVP")
    if op in (OFFER, ANSWER):
        if facts.sdp is None:
            raise NgError(f"{op} needs an SDP body and the message has none")
        d["sdp"] = facts.sdp
        d.update({k: v for k, v in lists.items() if v})
        if codec:
            d["codec"] = codec
        if directions:
            d["direction"] = directions
    if flags is not None and "received-from" not in d and facts.src_ip:
        d["received-from"] = [_family(facts.src_ip), facts.src_ip]
    d["call-id"] = call_id
    if via:
        if via > len(facts.vias) or not facts.vias[via - 1]:
            raise NgError(f"the message has no branch in Via {via}")
        d["via-branch"] = facts.vias[via - 1]
    _tags(d, op, facts.is_request, from_tag, to_tag if with_to_tag else None, directional)
    d["command"] = op
    d["sip-message-type"] = "sip_request" if facts.is_request else "sip_reply"
    if words:
        d["flags"] = words
    return Command(op, d)


def _tags(
    d: dict[str, Any], op: str, is_request: bool, ftag: str, ttag: str | None, directional: bool
) -> None:
    # The tags name the side that sent the SDP: an answer carried by a request (ACK, PRACK)
    # or an offer carried by a reply (late offer in a 200) comes from the other side of the
    # dialog, so its tags are swapped (as Kamailio does).
    if (is_request and op != ANSWER) or (not is_request and op in (ANSWER, DELETE)) or directional:
        d["from-tag"] = ftag
        if ttag:
            d["to-tag"] = ttag
        return
    if not ttag:
        raise NgError(f"{op} needs a To tag here")
    d["from-tag"], d["to-tag"] = ttag, ftag


def _family(ip: str) -> str:
    return "IP6" if ":" in ip else "IP4"


def _via_choice(word: str, value: str, is_request: bool) -> int:
    if value in ("1", "2"):
        return int(value)
    if value == "auto":
        return 1 if is_request else 2
    raise NgError(f"flag {word!r}: ksr supports via-branch=1, 2 or auto")


def _need(word: str, value: str | None) -> str:
    if not value:
        raise NgError(f"flag {word!r} needs a value")
    return value


def _int(word: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise NgError(f"flag {word!r} needs a number") from None


def ping_command() -> Command:
    return Command(PING, {"command": PING})


def datagram(cookie: str, command: Command) -> bytes:
    return cookie.encode() + b" " + encode(command.body)


def answer_of_untrusted(cookie: str, data: bytes) -> dict[bytes, Any] | None:
    """The relay's dictionary if ``data`` answers ``cookie``; None for another cookie (a late
    answer to an earlier try). NgError when it answers this cookie with garbage."""
    head, sep, rest = data.partition(b" ")
    if not sep or head != cookie.encode():
        return None
    try:
        value = decode_untrusted(rest)
    except BencodeError as e:
        raise NgError(f"malformed answer: {e}") from None
    if not isinstance(value, dict) or not isinstance(value.get(b"result"), bytes):
        raise NgError("answer without a result")
    return value


@dataclass(slots=True)
class Outcome:
    """What one answer means: ``ok`` with the dictionary, ``retry`` on another relay, or a
    refusal with its reason."""

    ok: bool
    retry: bool
    reason: str
    answer: dict[bytes, Any]


def outcome(answer: dict[bytes, Any]) -> Outcome:
    result = answer[b"result"].decode(errors="replace")
    if result in ("ok", "pong"):
        return Outcome(True, False, result, answer)
    if result in RETRY_ELSEWHERE:
        return Outcome(False, True, result, answer)
    raw = answer.get(b"error-reason", b"")
    reason = raw.decode(errors="replace") if isinstance(raw, bytes) else ""
    if result == "error":
        return Outcome(False, reason in RETRY_ERRORS, reason or "error without a reason", answer)
    return Outcome(False, False, f"unknown result {result!r}", answer)


def plain(value: Any) -> Any:
    """An answer as JSON-able values (bytes decoded), for $var results and RPC replies."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    return value
