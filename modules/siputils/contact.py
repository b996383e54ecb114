"""Contact URI encodings of siputils: ``encode_contact`` (fields joined by a separator in the
user part) and ``contact_param_encode`` (the whole URI base58-encoded in one parameter)."""

from __future__ import annotations

from ksr.sip.uri import Uri, parse_uri

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(B58[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes | None:
    n = 0
    for c in text:
        i = B58.find(c)
        if i < 0:
            return None
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def encode_fields(uri_text: str, prefix: str, public_ip: str, sep: str) -> str | None:
    """sip:user:pw@host:port;transport=t;p -> sip:PREFIX*user*pw*host*port*t@public_ip;p"""
    try:
        u = parse_uri(uri_text)
    except Exception:
        return None
    if not u.is_sip:
        return None
    params = {k: v for k, v in u.params.items() if k != "transport"}
    fields = [u.user or "", u.password or "", u.host, str(u.port or ""), u.transport or ""]
    out = Uri(u.scheme, sep.join([prefix, *fields]), None, public_ip, None, params, u.headers)
    return str(out)


def decode_fields(uri_text: str, sep: str) -> str | None:
    try:
        u = parse_uri(uri_text)
    except Exception:
        return None
    parts = (u.user or "").split(sep)
    if len(parts) != 6:
        return None
    _prefix, user, pw, host, port, proto = parts
    if not host:
        return None
    params = dict(u.params)
    if proto:
        params = {"transport": proto, **params}
    port_n = int(port) if port.isdigit() else None
    return str(Uri(u.scheme, user or None, pw or None, host, port_n, params, u.headers))


def param_encode(uri_text: str, pname: str, saddr: str) -> str | None:
    """The whole contact URI as parameter ``pname`` of the URI ``saddr``."""
    base = saddr if saddr.lower().startswith(("sip:", "sips:")) else f"sip:{saddr}"
    try:
        parse_uri(base)
    except Exception:
        return None
    return f"{base};{pname}={b58encode(uri_text.encode())}"


def param_decode(uri_text: str, pname: str) -> str | None:
    try:
        u = parse_uri(uri_text)
    except Exception:
        return None
    v = u.params.get(pname.lower())
    if not v:
        return None
    raw = b58decode(v)
    return raw.decode("utf-8", "replace") if raw else None


def param_remove(uri_text: str, pname: str) -> str | None:
    try:
        u = parse_uri(uri_text)
    except Exception:
        return None
    if pname.lower() not in u.params:
        return None
    del u.params[pname.lower()]
    return str(u)
