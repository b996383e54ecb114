"""SIP/SIPS/TEL URIs (RFC 3261 §19.1, RFC 3966), parsed without losing the original text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

from .abnf import SCHEME_RE, uint
from .errors import RemoteProtocolError
from .hostport import format_hostport

SIP_SCHEMES: Final = frozenset({"sip", "sips"})
_BAD_CHARS: Final = re.compile(
    r"[ \t\r\n<>]"
)  # never inside a URI (one C scan, not a loop per char)
# schemes that need no SCHEME_RE match: a regex call from compiled code costs ~1,800
# instructions, about a fifth of a SIP URI's parse
_PLAIN_SCHEMES: Final = frozenset({"sip", "sips", "tel", "SIP", "SIPS", "TEL"})


@dataclass(slots=True, init=False)
class Uri:
    """A URI split into parts. ``str(uri)`` rebuilds it; unknown schemes keep ``opaque``."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None  # the text after '?', unparsed
    opaque: str | None = None  # everything after "scheme:" for non-SIP schemes

    # init=False and __init__ written out: mypyc compiles it (the generated one runs as
    # Python code, ~3,000 instructions per object)
    def __init__(
        self,
        scheme: str,
        user: str | None = None,
        password: str | None = None,
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: str | None = None,
        opaque: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.headers = headers
        self.opaque = opaque

    @property
    def is_sip(self) -> bool:
        return self.scheme in SIP_SCHEMES

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def hostport(self) -> str:
        return format_hostport(self.host, self.port)

    def user_unescaped(self) -> str | None:
        return unquote(self.user) if self.user is not None else None

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        s = [self.scheme, ":"]
        if self.user is not None:
            s.append(self.user)
            if self.password is not None:
                s.append(":" + self.password)
            s.append("@")
        s.append(self.hostport)
        for k, v in self.params.items():
            s.append(f";{k}" if v is None else f";{k}={v}")
        if self.headers is not None:
            s.append("?" + self.headers)
        return "".join(s)

    def copy(self) -> Uri:
        return Uri(
            self.scheme,
            self.user,
            self.password,
            self.host,
            self.port,
            dict(self.params),
            self.headers,
            self.opaque,
        )


def parse_uri(text: str) -> Uri:
    """Parse a URI as written (no surrounding <>). Raises RemoteProtocolError (416 for an
    unknown scheme is decided by the caller: any scheme parses, only SIP ones are split)."""
    scheme, colon, rest = text.partition(":")
    if not colon or (scheme not in _PLAIN_SCHEMES and not SCHEME_RE.fullmatch(scheme)):
        raise RemoteProtocolError(f"Bad URI {text!r}")
    scheme = scheme.lower()
    # _BAD_CHARS without the regex for the usual URI: \t, \r and \n are not printable, so
    # a printable text needs only the three other characters looked for
    if (
        " " in text
        or "<" in text
        or ">" in text
        or (not text.isprintable() and _BAD_CHARS.search(text))
    ):
        raise RemoteProtocolError("Whitespace or <> inside URI")
    if scheme not in SIP_SCHEMES:
        if scheme == "tel":
            number, _, ptext = rest.partition(";")
            return Uri(scheme, user=number, params=_params(ptext), opaque=rest)
        return Uri(scheme, opaque=rest)
    headers: str | None = None
    user = password = None
    # '?' and ';' are legal inside the user part, '@' is not legal after it: the last '@'
    # ends the userinfo, and only a '?' after it starts the headers.
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        if ":" in userinfo:
            user, _, password = userinfo.partition(":")
        else:
            user = userinfo
        if user == "":
            raise RemoteProtocolError("Empty user part in URI")
    if "?" in rest:
        rest, _, headers = rest.partition("?")
    hostport, semi, ptext = rest.partition(";")
    host, port = _hostport(hostport)
    return Uri(scheme, user, password, host, port, _params(ptext) if semi else {}, headers)


def _hostport(hp: str) -> tuple[str, int | None]:
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0:
            raise RemoteProtocolError("Bad IPv6 reference in URI")
        host, tail = hp[1:end], hp[end + 1 :]
        if tail and not tail.startswith(":"):
            raise RemoteProtocolError("Bad URI host")
        port_text = tail[1:]
    else:
        host, _, port_text = hp.partition(":")
    if not host:
        raise RemoteProtocolError("URI without host")
    if port_text:
        port = uint(port_text, 65535)
        if port is None:
            raise RemoteProtocolError("Bad URI port")
        return host.lower(), port
    return host.lower(), None


def _params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text:
        return params
    for part in text.split(";"):
        if not part:
            continue
        k, eq, v = part.partition("=")
        params[k.lower()] = v if eq else None
    return params
