"""HTTP Digest for SIP (RFC 2617, RFC 7616, RFC 3261 §22): hashes, responses and nonces.

Sans-IO: no clock, no sockets. A nonce carries its creation time and a serial number, signed
with a server secret, so any node sharing the secret can check it; the serial lets the caller
track nonce-counts and refuse replays.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass

ALGORITHMS: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def canonical_algorithm(name: str | None) -> str | None:
    """``md5`` → ``MD5``, ``sha-256-sess`` → ``SHA-256-sess``; None if unsupported."""
    if not name:
        return "MD5"
    base, sess = (name[:-5], "-sess") if name.lower().endswith("-sess") else (name, "")
    for alg in ALGORITHMS:
        if alg.lower() == base.lower():
            return alg + sess
    return None


def hash_hex(algorithm: str, data: str) -> str:
    base = algorithm[:-5] if algorithm.endswith("-sess") else algorithm
    h = hashlib.new(ALGORITHMS[base])
    h.update(data.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    return hash_hex(algorithm, f"{username}:{realm}:{password}")


def session_ha1(algorithm: str, ha1: str, nonce: str, cnonce: str) -> str:
    """RFC 7616 §3.4.2: for the -sess variants HA1 also covers the nonces."""
    if algorithm.endswith("-sess"):
        return hash_hex(algorithm, f"{ha1}:{nonce}:{cnonce}")
    return ha1


def compute_response(
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The request-digest for stored ``ha1`` (RFC 7616 §3.4.1; RFC 2617 without qop)."""
    key = session_ha1(algorithm, ha1, nonce, cnonce)
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        base = algorithm[:-5] if algorithm.endswith("-sess") else algorithm
        a2 += ":" + hashlib.new(ALGORITHMS[base], body).hexdigest()
    ha2 = hash_hex(algorithm, a2)
    if qop:
        return hash_hex(algorithm, f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return hash_hex(algorithm, f"{key}:{nonce}:{ha2}")


def responses_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.lower().encode(), b.lower().encode())


@dataclass(frozen=True, slots=True)
class NonceInfo:
    created: int  # unix seconds
    serial: int


class NonceCodec:
    """Nonces: base64url(created:u32, serial:u32, hmac-sha256(secret)[:12])."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def make(self, created: int, serial: int) -> str:
        head = struct.pack(">II", created & 0xFFFFFFFF, serial & 0xFFFFFFFF)
        sig = hmac.new(self.secret, head, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(head + sig).decode().rstrip("=")

    def parse_untrusted(self, nonce: str) -> NonceInfo | None:
        """The nonce's fields if it is one of ours, else None."""
        if len(nonce) != 27:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (ValueError, TypeError):
            return None
        if len(raw) != 20:
            return None
        head, sig = raw[:8], raw[8:]
        if not hmac.compare_digest(sig, hmac.new(self.secret, head, hashlib.sha256).digest()[:12]):
            return None
        created, serial = struct.unpack(">II", head)
        return NonceInfo(created, serial)


def parse_nc(nc: str) -> int | None:
    """nonce-count: exactly 8 hex digits (RFC 7616 §3.4)."""
    if len(nc) != 8:
        return None
    try:
        return int(nc, 16)
    except ValueError:
        return None
