"""``ksr db convert DB_URL``: move the tables an earlier ksr wrote in its own layout
(``subscriber``, ``location``, ``address``, ``dialog``, versions in ``ksr_version``) into
Kamailio's tables (docs/storage.md).

Each old table is renamed ``<name>_ksr`` (kept, nothing is deleted) and its rows are written to
Kamailio's table of the same name, created when missing. A table that is not in ksr's layout is
left alone. Run it while no ksr uses the database.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, Protocol, cast

from .db import DbError, KamTable, Row, Store, TableSpec, open_store
from .db.kamailio import KSR_VERSION_TABLE
from .db.sql import SqlStore


class Subcommands(Protocol):
    """What ``ArgumentParser.add_subparsers()`` returns (argparse keeps its class private)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def add_parser(sub: Subcommands) -> None:
    s = sub.add_parser("db", help="database tools")
    ss = s.add_subparsers(dest="action", required=True)
    c = ss.add_parser(
        "convert",
        help="move subscriber/location/address/dialog tables of ksr's own layout into "
        "Kamailio's tables (the old ones are kept as <name>_ksr)",
    )
    c.add_argument("db_url", help="sqlite:///path or postgres://... (with ?prefix= if used)")
    c.set_defaults(func=main)


def _with_layout(url: str, layout: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}layout={layout}"


def _conversions() -> list[tuple[TableSpec, Callable[[Store, list[Row]], int]]]:
    from .modules.auth_db.subscribers import SUBSCRIBER_SPEC
    from .modules.dialog.store import SPEC as DIALOG_SPEC
    from .modules.permissions import ADDRESS_SPEC
    from .modules.usrloc.contact import LOCATION_SPEC

    return [
        (SUBSCRIBER_SPEC, _subscribers),
        (LOCATION_SPEC, _locations),
        (ADDRESS_SPEC, _addresses),
        (DIALOG_SPEC, _dialogs),
    ]


def _subscribers(store: Store, rows: list[Row]) -> int:
    from .modules.auth_db.subscribers import Subscribers

    t = Subscribers(store).table
    for r in rows:  # the hashes as they are: the clear password may not be kept
        t.put(
            {
                "username": r["username"],
                "domain": r["domain"],
                "password": r["password"] or "",
                "ha1": r["ha1"] or "",
                "ha1b": r["ha1b"] or "",
            }
        )
    return len(rows)


def _locations(store: Store, rows: list[Row]) -> int:
    from .modules.usrloc.contact import KAM_LOCATION_SPEC, Contact

    t = store.table(KAM_LOCATION_SPEC)
    for r in rows:
        c = Contact.from_row(r)
        t.put(c.to_kam_row(use_domain="@" in c.aor))
    return len(rows)


def _addresses(store: Store, rows: list[Row]) -> int:
    from .db.kamailio import ADDRESS

    t = cast(KamTable, store.table(ADDRESS.spec()))
    for r in rows:  # new ids from the table's sequence, so later INSERTs do not collide
        t.insert({k: v for k, v in r.items() if k != "id"})
    return len(rows)


def _dialogs(store: Store, rows: list[Row]) -> int:
    from .modules.dialog.kamrows import KamDialogRows
    from .modules.dialog.model import Dialog

    t = KamDialogRows(store, "dialog", "dialog_vars")
    for r in rows:
        t.write(Dialog.from_dict(json.loads(str(r["data"]))))
    return len(rows)


def convert(url: str, say: Callable[[str], None] = print) -> int:
    """Convert every table of ksr's layout found at ``url``; returns how many were."""
    if not url.startswith(("sqlite:", "postgres:", "postgresql:")):
        raise DbError("ksr db convert needs an SQL db_url (sqlite:// or postgres://)")
    old, new = open_store(_with_layout(url, "ksr")), open_store(_with_layout(url, "kamailio"))
    assert isinstance(old, SqlStore)
    done = 0
    try:
        for spec, write in _conversions():
            name = old.prefix + spec.name
            if _ksr_version(old, name) is None:
                continue
            rows = old.table(spec).all()
            _rename(old, spec, name)
            n = write(new, rows)
            say(f"{spec.name}: {n} rows moved to Kamailio's table, the old one is {name}_ksr")
            done += 1
    finally:
        old.close()
        new.close()
    if not done:
        say("no table of ksr's own layout found")
    return done


def _ksr_version(store: SqlStore, name: str) -> int | None:
    kt = store.prefix + KSR_VERSION_TABLE
    if store.columns(kt) is None or store.columns(name) is None:
        return None
    rows, _ = store.execute(
        f"SELECT table_version FROM {kt} WHERE table_name = ?", (name,), fetch=True
    )
    return int(rows[0][0]) if rows else None


def _rename(store: SqlStore, spec: TableSpec, name: str) -> None:
    """``name`` -> ``name_ksr``; its indexes go (their names are Kamailio's too)."""
    for f in (*spec.indexes, *spec.ordered):
        store.execute(f"DROP INDEX IF EXISTS {name}_{f}_idx")
    store.execute(f"ALTER TABLE {name} RENAME TO {name}_ksr")
    kt = store.prefix + KSR_VERSION_TABLE
    store.execute(f"UPDATE {kt} SET table_name = ? WHERE table_name = ?", (f"{name}_ksr", name))


def main(args: argparse.Namespace) -> int:
    try:
        convert(args.db_url)
    except DbError as err:
        print(f"ksr db convert: {err}", file=sys.stderr)
        return 1
    return 0
