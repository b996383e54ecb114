"""received= and rport= for the top Via (RFC 3261 §18.2.1, RFC 3581), on what leaves only.

The received request is never changed: the script reads its Via, its length and its bytes as
they arrived (as Kamailio's scripts do). The parameters go on the copies that are sent: the
forwarded request (whose Via list keeps the sender's Via under ours) and every reply made
here (which copies the request's Vias). ``ViaFix`` holds the received first Via header line,
the same line with the parameters added, and that Via parsed with them (where replies go).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .headers import Via, split_commas
from .message import Header, Request

_BARE_RPORT: Final = re.compile(r";\s*rport\s*(?=;|$)", re.IGNORECASE)


@dataclass(slots=True, frozen=True)
class ViaFix:
    original: Header  # the first Via header line, as received (identity matters)
    sent: Header  # the same line with received=/rport= on its first value
    via: Via  # the top Via with the parameters: replies go to its received/rport


def received_fix(req: Request, src_ip: str, src_port: int, force_rport: bool) -> ViaFix | None:
    """What the top Via needs when the request came from ``src_ip:src_port``: received= when
    its host is not the source address, rport= filled when it asks for it (or force_rport);
    None when the Via is right as it is."""
    via = req.top_via
    rport = via.params.get("rport", "-")
    want_rport = rport in (None, "") or force_rport
    if via.host == src_ip and not want_rport and "received" not in via.params:
        return None  # (a received= the sender wrote itself is replaced: replies go to src_ip)
    original = next(h for h in req.headers if h.key == "via")
    # the first value is the Via parsed above: split the line only when it holds more
    values = split_commas(original.value) if "," in original.value else [original.value]
    params = dict(via.params)
    params["received"] = src_ip
    if want_rport:
        params["rport"] = str(src_port)
    fixed = Via(via.protocol, via.transport, via.host, via.port, params)
    first = values[0].rstrip()
    if "received" in via.params or (want_rport and rport not in (None, "", "-")):
        first = str(fixed)  # a value to replace: write the Via anew
    else:
        # the received text, extended: the next hop sees the sender's Via as it was sent
        if want_rport and rport != "-":
            first = _BARE_RPORT.sub(f";rport={src_port}", first, count=1)
        elif want_rport:
            first += f";rport={src_port}"
        first += f";received={src_ip}"
    values[0] = first
    return ViaFix(original, Header(original.name, ", ".join(values)), fixed)


def sent_headers(req: Request, headers: list[Header]) -> list[Header]:
    """``headers`` (the request's, or a copy made from them) with the fixed top Via line."""
    fix = req.via_fix
    if fix is None:
        return headers
    old, new = fix.original, fix.sent
    return [new if h is old else h for h in headers]
