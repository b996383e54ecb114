"""One binding of an address-of-record (Kamailio's ucontact) and its database row."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

from ksr.db import Row, TableSpec

ALL_METHODS = 0xFFFFFFFF  # no Allow header: every method (shown as 4294967295)
NOT_SET = "[not set]"

# One location table layout, created under each table name the script uses ("location"...).
LOCATION_SPEC = TableSpec(
    "location",
    key="ruid",
    fields=(
        ("ruid", "str"),
        ("aor", "str"),
        ("contact", "str"),
        ("received", "str"),
        ("path", "str"),
        ("expires", "float"),
        ("q", "int"),
        ("callid", "str"),
        ("cseq", "int"),
        ("flags", "int"),
        ("cflags", "int"),
        ("user_agent", "str"),
        ("socket", "str"),
        ("methods", "int"),
        ("instance", "str"),
        ("reg_id", "int"),
        ("server_id", "int"),
        ("conn_id", "int"),
        ("keepalive", "int"),
        ("last_modified", "float"),
    ),
    indexes=("aor",),
    ordered=("expires",),
    version=1,
)


@dataclass(slots=True)
class Contact:
    aor: str
    contact: str
    expires: float  # absolute unix time; 0 = permanent
    q: int = -1  # q*1000; -1 = not given
    callid: str = ""
    cseq: int = 0
    flags: int = 0
    cflags: int = 0
    user_agent: str = ""
    received: str = ""
    socket: str = ""
    path: str = ""
    ruid: str = ""
    instance: str = ""
    reg_id: int = 0
    methods: int = ALL_METHODS
    server_id: int = 0
    conn_id: int = -1
    keepalive: int = 0
    last_modified: float = 0.0

    def expired(self, now: float) -> bool:
        return self.expires != 0 and self.expires <= now

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires - now)) if self.expires else 0

    def to_row(self) -> Row:
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_row(cls, row: Row) -> Contact:
        kw = {}
        for name in _FIELDS:
            v = row.get(name)
            if v is not None:
                kw[name] = v
            elif name in ("aor", "contact"):
                kw[name] = ""
            elif name == "expires":
                kw[name] = 0.0
        return cls(**kw)  # type: ignore[arg-type]

    def copy(self) -> Contact:
        # positional, in field order: dataclasses.replace() inspects the class on every call
        return type(self)(*[getattr(self, name) for name in _FIELDS])


_FIELDS = tuple(f.name for f in dataclasses.fields(Contact))  # Contact's fields, in order


class RuidMaker:
    """Record unique ids like Kamailio's ``uloc-<start time>-<pid>-<n>``: unique across the
    processes of a host and across restarts (the start time changes)."""

    def __init__(self) -> None:
        self.prefix = f"uloc-{int(time.time()):x}-{os.getpid():x}"
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n:x}"
