"""The subscriber table: who may authenticate, with a password and/or precomputed HA1s.

Shared by auth_db and ``ksr subscriber``. Rows are keyed ``username@domain``.
"""

from __future__ import annotations

from ksr.db import Row, Store, Table, TableSpec
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


def subscriber_table(store: Store, name: str = "subscriber") -> Table:
    return store.table(SUBSCRIBER_SPEC.renamed(name))
