"""One binding of an address-of-record (Kamailio's ucontact) and its database row."""

from __future__ import annotations

import dataclasses
import operator
import os
import struct
import time
from dataclasses import dataclass
from typing import Any, Final

from ksr.db import Row, TableSpec
from ksr.db.kamailio import LOCATION, LOCATION_ATTRS

ALL_METHODS: Final = 0xFFFFFFFF  # no Allow header: every method (shown as 4294967295)
NOT_SET: Final = "[not set]"

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


# Kamailio's location table (stores of layout=kamailio): one row per ruid.
KAM_LOCATION_SPEC = LOCATION.spec(key="ruid")
# created next to it (Kamailio checks its version); ksr stores no contact attributes
KAM_LOCATION_ATTRS_SPEC = LOCATION_ATTRS.spec()


# init=False and __init__ written out: mypyc compiles it, where the generated one runs as
# Python code (~6,000 instructions per Contact built, against a few hundred)
@dataclass(slots=True, init=False)
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

    def __init__(
        self,
        aor: str,
        contact: str,
        expires: float,
        q: int = -1,
        callid: str = "",
        cseq: int = 0,
        flags: int = 0,
        cflags: int = 0,
        user_agent: str = "",
        received: str = "",
        socket: str = "",
        path: str = "",
        ruid: str = "",
        instance: str = "",
        reg_id: int = 0,
        methods: int = ALL_METHODS,
        server_id: int = 0,
        conn_id: int = -1,
        keepalive: int = 0,
        last_modified: float = 0.0,
    ) -> None:
        self.aor = aor
        self.contact = contact
        self.expires = expires
        self.q = q
        self.callid = callid
        self.cseq = cseq
        self.flags = flags
        self.cflags = cflags
        self.user_agent = user_agent
        self.received = received
        self.socket = socket
        self.path = path
        self.ruid = ruid
        self.instance = instance
        self.reg_id = reg_id
        self.methods = methods
        self.server_id = server_id
        self.conn_id = conn_id
        self.keepalive = keepalive
        self.last_modified = last_modified

    def expired(self, now: float) -> bool:
        return self.expires != 0 and self.expires <= now

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires - now)) if self.expires else 0

    def to_row(self) -> Row:
        return dict(zip(_FIELDS, _fields_of(self), strict=True))

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

    def to_kam_row(self, use_domain: bool) -> Row:
        """The row of Kamailio's location table: AOR split into username and domain (NULL
        without use_domain), q as a float, empty optional texts and "every method" as NULL."""
        user, at, domain = self.aor.partition("@") if use_domain else (self.aor, "", "")
        methods = self.methods
        return {
            "ruid": self.ruid,
            "username": user,
            "domain": domain if at else None,
            "contact": self.contact,
            "received": self.received or None,
            "path": self.path or None,
            "expires": self.expires,
            "q": self.q / 1000.0,
            "callid": self.callid,
            "cseq": self.cseq,
            "last_modified": self.last_modified,
            "flags": self.flags,
            "cflags": self.cflags,
            "user_agent": self.user_agent,
            "socket": self.socket or None,
            "methods": None if methods == ALL_METHODS else methods - (methods >> 31 << 32),
            "instance": self.instance or None,
            "reg_id": self.reg_id,
            "server_id": self.server_id,
            "connection_id": self.conn_id,
            "keepalive": self.keepalive,
            "partition": 0,
        }

    @classmethod
    def from_kam_row(cls, r: Row, use_domain: bool) -> Contact:
        user, domain = str(r.get("username") or ""), r.get("domain")
        methods = r.get("methods")
        q = r.get("q")
        cid = r.get("connection_id")
        return cls(
            aor=f"{user}@{domain}" if use_domain and domain else user,
            contact=str(r.get("contact") or ""),
            expires=float(r.get("expires") or 0.0),
            q=round(float(q) * 1000) if q is not None else -1,
            callid=str(r.get("callid") or ""),
            cseq=int(r.get("cseq") or 0),
            flags=int(r.get("flags") or 0),
            cflags=int(r.get("cflags") or 0),
            user_agent=str(r.get("user_agent") or ""),
            received=str(r.get("received") or ""),
            socket=str(r.get("socket") or ""),
            path=str(r.get("path") or ""),
            ruid=str(r.get("ruid") or ""),
            instance=str(r.get("instance") or ""),
            reg_id=int(r.get("reg_id") or 0),
            methods=ALL_METHODS if methods is None else int(methods) & ALL_METHODS,
            server_id=int(r.get("server_id") or 0),
            conn_id=-1 if cid is None else int(cid),
            keepalive=int(r.get("keepalive") or 0),
            last_modified=float(r.get("last_modified") or 0.0),
        )

    def values(self) -> tuple[object, ...]:
        """Every field in order, as plain values (what a shared table sends)."""
        return _fields_of(self)

    def copy(self) -> Contact:
        # positional, in field order: dataclasses.replace() inspects the class on every call
        return type(self)(*_fields_of(self))


_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Contact))  # Contact's fields, in order
# every field in one C call (a tuple), not one getattr per field from Python
_fields_of: Final = operator.attrgetter(*_FIELDS)


class RuidMaker:
    """Record unique ids like Kamailio's ``uloc-<start time>-<pid>-<n>``: unique across the
    processes of a host and across restarts (the start time changes). A node with a
    ``server_id`` puts it first, as Kamailio does (``uloc-<server_id>-<time>-<pid>-<n>``), so
    nodes sharing one location table never make the same id."""

    def __init__(self, server_id: int = 0) -> None:
        node = f"{server_id:x}-" if server_id else ""
        self.prefix = f"uloc-{node}{int(time.time()):x}-{os.getpid():x}"
        self._head = self.prefix + "-"  # what every id starts with: one concatenation per id
        self.n = 0

    def next(self) -> str:
        self.n += 1
        # not f"{n:x}": compiled, a format spec is a str.format method call (~2,000
        # instructions more per id)
        return self._head + hex(self.n)[2:]


# A binding as a replication frame (the shared location table's writes, modules/usrloc/
# domain.py): its numbers packed, then its texts in UTF-8 joined by NUL bytes. Packing and
# unpacking build no object but the Contact, which the receiving side constructs itself.
_NUMBERS: Final = struct.Struct("<2d9q")  # expires, last_modified; q ... keepalive
_NUMBERS_SIZE: Final = 88
_TEXTS: Final = 9


def pack_values(v: tuple[object, ...]) -> bytes | None:
    """``Contact.values()`` packed, or None when a field does not fit (a text holding a NUL
    or a lone surrogate, a number out of 64 bits, a value of another type)."""
    if len(v) != 20:
        return None
    try:
        texts = "\0".join((v[0], v[1], v[4], v[8], v[9], v[10], v[11], v[12], v[13]))  # type: ignore[arg-type]
        if texts.count("\0") != _TEXTS - 1:
            return None
        numbers = _NUMBERS.pack(
            v[2], v[19], v[3], v[5], v[6], v[7], v[14], v[15], v[16], v[17], v[18]
        )
        return numbers + texts.encode()
    except (TypeError, struct.error, UnicodeEncodeError):
        return None


def pack_contact(c: Contact) -> bytes | None:
    """``pack_values(c.values())`` read from the Contact itself: no tuple of its 20 fields
    (~4,000 instructions) on the way to the frame."""
    try:
        texts = "\0".join(
            (
                c.aor,
                c.contact,
                c.callid,
                c.user_agent,
                c.received,
                c.socket,
                c.path,
                c.ruid,
                c.instance,
            )
        )
        if texts.count("\0") != _TEXTS - 1:
            return None
        numbers = _NUMBERS.pack(
            c.expires,
            c.last_modified,
            c.q,
            c.cseq,
            c.flags,
            c.cflags,
            c.reg_id,
            c.methods,
            c.server_id,
            c.conn_id,
            c.keepalive,
        )
        return numbers + texts.encode()
    except (TypeError, struct.error, UnicodeEncodeError):
        return None


class BindingWrite:
    """How usrloc's ``Domain._mem_put`` travels to the sibling workers (a replication codec,
    ksr/core/replication.py): the binding's fields packed (``pack_values``), the Contact built
    from them on arrival, no pickle. Compiled with this module, so the sibling's apply runs
    no Python frame between the frame and the table's memory."""

    tag = 1

    def encode(self, args: tuple[object, ...]) -> bytes | None:
        values = args[0]
        return pack_values(values) if len(args) == 1 and type(values) is tuple else None

    def apply(self, table: Any, body: bytes, offset: int) -> None:
        """Store the binding in ``table`` (a usrloc Domain) as ``Domain.store`` does."""
        c = unpack_contact(body, offset)
        mem: dict[str, dict[str, Contact]] = table.mem
        cs = mem.get(c.aor)
        if cs is None:
            cs = mem[c.aor] = {}
        cs[c.ruid] = c


def unpack_contact(data: bytes, offset: int) -> Contact:
    """The Contact ``pack_values`` packed at ``data[offset:]`` (ValueError, struct.error,
    UnicodeDecodeError when malformed)."""
    expires, modified, q, cseq, flags, cflags, reg_id, methods, server_id, conn_id, alive = (
        _NUMBERS.unpack_from(data, offset)
    )
    texts = data[offset + _NUMBERS_SIZE :].decode().split("\0")
    if len(texts) != _TEXTS:
        raise ValueError(f"a packed binding has {len(texts)} texts")
    aor, contact, callid, user_agent, received, socket, path, ruid, instance = texts
    return Contact(
        aor,
        contact,
        expires,
        q,
        callid,
        cseq,
        flags,
        cflags,
        user_agent,
        received,
        socket,
        path,
        ruid,
        instance,
        reg_id,
        methods,
        server_id,
        conn_id,
        alive,
        modified,
    )
