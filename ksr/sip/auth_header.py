"""Authorization / WWW-Authenticate header values (RFC 3261 §25.1, RFC 7616)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import RemoteProtocolError


@dataclass(slots=True)
class Credentials:
    scheme: str  # "Digest", or another scheme we do not handle
    params: dict[str, str] = field(default_factory=dict)


def parse_credentials(value: str) -> Credentials:
    """Parse ``Digest a="b", c=d`` (quoted values unescaped, names lower-cased)."""
    v = value.strip()
    scheme, _, rest = v.partition(" ")
    if not scheme:
        raise RemoteProtocolError("Empty credentials")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise RemoteProtocolError("Bad auth parameter")
        name = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            end = rest.find('"', i)
            if end >= 0 and "\\" not in rest[i:end]:  # the usual case: nothing escaped
                params[name] = rest[i:end]
                i = end + 1
                continue
            buf: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(rest[i])
                i += 1
            if i >= n:
                raise RemoteProtocolError("Unterminated quoted auth parameter")
            i += 1
            params[name] = "".join(buf)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[name] = rest[i:end].strip()
            i = end
    return Credentials(scheme, params)


def format_challenge(scheme: str, params: list[tuple[str, str, bool]]) -> str:
    """Build ``Digest realm="x", nonce="y", algorithm=MD5``; the bool says whether to quote."""
    parts = [f'{k}="{v}"' if q else f"{k}={v}" for k, v, q in params]
    return f"{scheme} " + ", ".join(parts)
