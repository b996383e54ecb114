"""ul.* RPC reply shapes, byte-for-byte the structure Kamailio's usrloc answers with."""

from __future__ import annotations

import zlib
from typing import Any

from .contact import NOT_SET, Contact

TABLE_SIZE = 1024  # Kamailio's default hash_size 10 -> 1024 slots


def aor_hash(aor: str) -> int:
    return zlib.crc32(aor.encode("utf-8", "surrogateescape"))


def _s(v: str) -> str:
    return v if v else NOT_SET


def contact_info(c: Contact, now: float, state: str) -> dict[str, Any]:
    if c.expires == 0:
        expires: int | str = "permanent"
    elif c.expired(now):
        expires = "expired"
    else:
        expires = c.remaining(now)
    return {
        "Contact": {
            "Address": c.contact,
            "Expires": expires,
            "Q": c.q,
            "Call-ID": c.callid,
            "CSeq": c.cseq,
            "User-Agent": _s(c.user_agent),
            "Received": _s(c.received),
            "Path": _s(c.path),
            "State": state,
            "Flags": c.flags,
            "CFlags": c.cflags,
            "Socket": _s(c.socket),
            "Methods": c.methods,
            "Ruid": _s(c.ruid),
            "Instance": _s(c.instance),
            "Reg-Id": c.reg_id,
            "Server-Id": c.server_id,
            "Tcpconn-Id": c.conn_id,
            "Keepalive": c.keepalive,
            "Last-Keepalive": int(c.last_modified),
            "KA-Roundtrip": 0,
            "Last-Modified": int(c.last_modified),
        }
    }


def domain_dump(
    name: str, records: dict[str, list[Contact]], brief: bool, now: float, state: str
) -> dict[str, Any]:
    aors: list[dict[str, Any]] = []
    slots: dict[int, int] = {}
    for aor, contacts in records.items():
        h = aor_hash(aor)
        slots[h % TABLE_SIZE] = slots.get(h % TABLE_SIZE, 0) + 1
        if brief:
            aors.append({"AoR": aor})
        else:
            cs = sorted(contacts, key=order_key)
            aors.append(
                {
                    "Info": {
                        "AoR": aor,
                        "HashID": h,
                        "Contacts": [contact_info(c, now, state) for c in cs],
                    }
                }
            )
    return {
        "Domain": {
            "Domain": name,
            "Size": TABLE_SIZE,
            "AoRs": aors,
            "Stats": {"Records": len(records), "Max-Slots": max(slots.values(), default=0)},
        }
    }


def order_key(c: Contact) -> tuple[int, float]:
    """Kamailio's contact order: highest q first, then the most recently updated."""
    return (-c.q, -c.last_modified)
