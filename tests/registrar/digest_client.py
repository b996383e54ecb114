"""A UA-side digest helper for the tests: answer a challenge like a phone would."""

from __future__ import annotations

import os

from ksr.sip.auth_header import parse_credentials
from ksr.sip.digest import compute_ha1, compute_response
from ksr.sip.message import Response


def challenge_params(rpl: Response) -> dict[str, str]:
    value = rpl.get("www-authenticate") or rpl.get("proxy-authenticate")
    assert value, f"no challenge in {rpl.status}"
    return parse_credentials(value).params


def authorization(
    rpl: Response,
    user: str,
    password: str,
    method: str = "REGISTER",
    uri: str = "sip:127.0.0.1",
    nc: int = 1,
    algorithm: str | None = None,
    header: str = "Authorization",
    nonce: str | None = None,
) -> str:
    """The Authorization header line answering the challenge in ``rpl``."""
    ch = challenge_params(rpl)
    alg = algorithm or ch.get("algorithm", "MD5")
    realm = ch["realm"]
    n = nonce or ch["nonce"]
    cnonce = os.urandom(4).hex()
    ncs = f"{nc:08x}"
    qop = "auth" if "qop" in ch else None
    ha1 = compute_ha1(alg, user, realm, password)
    resp = compute_response(alg, ha1, n, method, uri, qop, ncs, cnonce)
    parts = [
        f'username="{user}"',
        f'realm="{realm}"',
        f'nonce="{n}"',
        f'uri="{uri}"',
        f'response="{resp}"',
        f"algorithm={alg}",
    ]
    if qop:
        parts += [f"qop={qop}", f"nc={ncs}", f'cnonce="{cnonce}"']
    return f"{header}: Digest " + ", ".join(parts)
