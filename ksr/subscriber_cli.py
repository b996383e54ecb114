"""``ksr subscriber add|rm|list``: manage the auth_db subscriber table of a configuration.

The database is the one ``[modparam.auth_db] db_url`` names (the default SQLite file when not
set), so the running server sees the change at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Protocol

from .core.config import ConfigError, load_config
from .db import DEFAULT_DB_URL, DbError, open_store


class Subcommands(Protocol):
    """What ``ArgumentParser.add_subparsers()`` returns, as far as this file uses it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def add_parser(sub: Subcommands) -> None:
    s = sub.add_parser("subscriber", help="add, remove or list auth_db subscribers")
    ss = s.add_subparsers(dest="action", required=True)
    a = ss.add_parser("add", help="add or change a subscriber: USER@DOMAIN PASSWORD")
    a.add_argument("address")
    a.add_argument("password")
    a.add_argument("--no-clear-password", action="store_true", help="store only the HA1 hashes")
    r = ss.add_parser("rm", help="remove a subscriber: USER@DOMAIN")
    r.add_argument("address")
    ss.add_parser("list", help="list subscribers")
    for p in (a, r, ss.choices["list"]):
        p.add_argument("--config", "-f", help="TOML configuration (its auth_db db_url is used)")
        p.add_argument("--table", default="subscriber", help="table name (default subscriber)")
    s.set_defaults(func=main)


def _db_url(config: str | None) -> str:
    if not config:
        return DEFAULT_DB_URL
    cfg = load_config(config)
    return str(cfg.modparam.get("auth_db", {}).get("db_url", DEFAULT_DB_URL))


def _split(address: str) -> tuple[str, str]:
    a = address.removeprefix("sip:")
    user, at, domain = a.partition("@")
    if not at or not user or not domain:
        raise ValueError(f"expected USER@DOMAIN, got {address!r}")
    return user, domain


def main(args: argparse.Namespace) -> int:
    from ksr.modules.auth_db.subscribers import Subscribers

    try:
        store = open_store(_db_url(args.config))
        table = Subscribers(store, args.table)
        if args.action == "add":
            user, domain = _split(args.address)
            table.add(user, domain, args.password, not args.no_clear_password)
            print(f"added {user}@{domain}")
        elif args.action == "rm":
            user, domain = _split(args.address)
            if not table.remove(user, domain):
                print(f"ksr subscriber: no subscriber {user}@{domain}", file=sys.stderr)
                return 1
            print(f"removed {user}@{domain}")
        else:
            for row in sorted(table.all(), key=lambda r: f"{r['username']}@{r['domain']}"):
                print(f"{row['username']}@{row['domain']}")
        store.close()
    except (ConfigError, DbError, ValueError) as err:
        print(f"ksr subscriber: {err}", file=sys.stderr)
        return 1
    return 0
