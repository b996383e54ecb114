"""The subscriber table: who may authenticate, with a password and/or precomputed HA1s.

Shared by auth_db and ``ksr subscriber``. Two layouts (docs/storage.md): Kamailio's
(``username``, ``domain``, ``password``, ``ha1``, ``ha1b``; what kamctl writes), the default on
SQL databases, and ksr's own (rows keyed ``username@domain``, also ``ha1_sha256``), kept on Redis.
"""

from __future__ import annotations

from typing import cast

from ksr.db import KamTable, Row, Store, Table, TableSpec
from ksr.db.kamailio import SUBSCRIBER
from ksr.sip.digest import compute_ha1

SUBSCRIBER_SPEC = TableSpec(
    "subscriber",
    key="id",
    fields=(
        ("id", "str"),
        ("username", "str"),
        ("domain", "str"),
        ("password", "str"),
        ("ha1", "str"),
        ("ha1b", "str"),
        ("ha1_sha256", "str"),
        ("email_address", "str"),
        ("rpid", "str"),
    ),
    indexes=("username",),
    version=1,
)


def subscriber_row(username: str, domain: str, password: str, store_password: bool = True) -> Row:
    """A row with every HA1 variant (realm = domain): ha1 (MD5), ha1b (MD5 of user@domain),
    ha1_sha256; the clear password too unless ``store_password`` is off."""
    return {
        "id": f"{username}@{domain}",
        "username": username,
        "domain": domain,
        "password": password if store_password else None,
        "ha1": compute_ha1("MD5", username, domain, password),
        "ha1b": compute_ha1("MD5", f"{username}@{domain}", domain, password),
        "ha1_sha256": compute_ha1("SHA-256", username, domain, password),
    }


class Subscribers:
    """One subscriber table in either layout. ``extra``: more columns to read (Kamailio's
    layout has only its own unless named here)."""

    def __init__(self, store: Store, name: str = "subscriber", extra: tuple[str, ...] = ()):
        self.kam: KamTable | None = None
        if store.layout == "kamailio":
            spec = SUBSCRIBER.spec(key="username", conflict=("username", "domain"), extra=extra)
            t = cast(KamTable, store.table(spec.renamed(name)))
            self.kam = t
            self.table: Table = t
        else:
            self.table = store.table(SUBSCRIBER_SPEC.renamed(name))

    def lookup(self, user: str, domain: str | None) -> Row | None:
        """The row of ``user`` (in ``domain`` unless None: any domain)."""
        if self.kam is None:
            if domain is not None:
                return self.table.get(f"{user}@{domain}")
            rows = self.table.find("username", user)
        else:
            where: Row = {"username": user}
            if domain is not None:
                where["domain"] = domain
            rows = [_kam_row(r) for r in self.kam.select(where)]
        return rows[0] if rows else None

    def add(self, user: str, domain: str, password: str, store_password: bool = True) -> None:
        row = subscriber_row(user, domain, password, store_password)
        if self.kam is None:
            self.table.put(row)
            return
        row.pop("id")
        row.pop("ha1_sha256")
        row["password"] = row["password"] or ""  # NOT NULL in Kamailio's table
        self.kam.put(row)

    def remove(self, user: str, domain: str) -> bool:
        if self.kam is None:
            return self.table.delete(f"{user}@{domain}")
        return self.kam.delete_match({"username": user, "domain": domain}) > 0

    def all(self) -> list[Row]:
        rows = self.table.all()
        return rows if self.kam is None else [_kam_row(r) for r in rows]


def _kam_row(r: Row) -> Row:
    # kamctl writes '' for "no clear password" (the column is NOT NULL)
    if r.get("password") == "":
        r["password"] = None
    return r
