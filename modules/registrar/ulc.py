"""``$ulc(profile=>attr)``: contacts fetched by reg_fetch_contacts (and ``exp`` for the
usrloc:contact-expired event), with Kamailio's attribute names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ksr.modules.usrloc.api import Contact, aor_hash

if TYPE_CHECKING:
    from ksr.core.context import MsgContext

Value = int | str | None


@dataclass(slots=True)
class Fetched:
    aor: str
    domain: str
    contacts: list[Contact]


def record_attr(f: Fetched, attr: str) -> Value:
    if attr == "aor":
        return f.aor
    if attr == "domain":
        return f.domain
    if attr == "aorhash":
        return aor_hash(f.aor)
    if attr == "count":
        return len(f.contacts)
    return None


def contact_attr(c: Contact, attr: str) -> Value:
    table: dict[str, Value] = {
        "addr": c.contact,
        "path": c.path or None,
        "received": c.received or None,
        "expires": int(c.expires),
        "callid": c.callid,
        "q": c.q,
        "cseq": c.cseq,
        "flags": c.flags,
        "cflags": c.cflags,
        "user_agent": c.user_agent or None,
        "socket": c.socket or None,
        "modified": int(c.last_modified),
        "methods": c.methods,
        "ruid": c.ruid,
        "reg_id": c.reg_id,
        "instance": c.instance or None,
        "conid": c.conn_id,
        "server_id": c.server_id,
        "keepalive": c.keepalive,
        "aor": c.aor,
    }
    return table.get(attr)


class UlcProfiles:
    def __init__(self) -> None:
        self.profiles: dict[str, Fetched] = {}

    def get(self, profile: str, attr: str, idx: int | None) -> Value:
        f = self.profiles.get(profile)
        if f is None:
            return None
        v = record_attr(f, attr)
        if v is not None or attr in ("aor", "domain", "aorhash", "count"):
            return v
        i = idx or 0
        if i < 0:
            i += len(f.contacts)
        if not 0 <= i < len(f.contacts):
            return None
        return contact_attr(f.contacts[i], attr)

    def pv_get(self, ctx: MsgContext, arg: str, idx: int | None) -> Value:
        profile, sep, attr = arg.partition("=>")
        if not sep:
            return None
        return self.get(profile.strip(), attr.strip(), idx)
