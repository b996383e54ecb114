"""URI comparison (RFC 3261 §19.1.4) for cmp_uri and cmp_aor: 1 equal, -1 different, -2 error."""

from __future__ import annotations

from urllib.parse import unquote

from ksr.sip.uri import Uri, parse_uri

# Parameters that must match when present in either URI (RFC 3261 §19.1.4).
_STRICT = ("transport", "user", "ttl", "method", "maddr")


def _parse(text: str) -> Uri | None:
    t = text.strip()
    if t.startswith("<") and t.endswith(">"):
        t = t[1:-1]
    try:
        u = parse_uri(t)
    except Exception:
        return None
    return u


def _base_equal(a: Uri, b: Uri, with_port: bool = True) -> bool:
    if a.scheme != b.scheme:
        return False
    if unquote(a.user or "") != unquote(b.user or "") or (a.password or "") != (b.password or ""):
        return False
    if a.host.lower() != b.host.lower():
        return False
    return not with_port or a.port == b.port


def cmp_uri(x: str, y: str) -> int:
    a, b = _parse(x), _parse(y)
    if a is None or b is None:
        return -2
    if not a.is_sip or not b.is_sip:
        return 1 if str(a).lower() == str(b).lower() else -1
    if not _base_equal(a, b):
        return -1
    for p in _STRICT:
        va, vb = a.params.get(p), b.params.get(p)
        if (p in a.params) != (p in b.params) or (va or "").lower() != (vb or "").lower():
            return -1
    for p in set(a.params) & set(b.params):
        if (a.params[p] or "").lower() != (b.params[p] or "").lower():
            return -1
    return 1


def cmp_aor(x: str, y: str) -> int:
    a, b = _parse(x), _parse(y)
    if a is None or b is None:
        return -2
    if a.is_sip and b.is_sip:
        a.scheme = b.scheme = "sip"  # sip: and sips: name the same AoR
    return 1 if _base_equal(a, b) else -1
