"""Parsing ``db_url`` values: which backend, where, and the optional table-name prefix."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ksr.suspend.backend import Limits

from .base import DbError

# db_url options that tune how ksr runs calls (ksr/suspend/backend.py), not the driver
_LIMIT_OPTIONS = {
    "max_conns": ("pool", int),
    "max_queue": ("queue", int),
    "query_timeout": ("timeout", float),
    "breaker_failures": ("breaker_failures", int),
    "breaker_cooldown": ("breaker_cooldown", float),
    "offload": ("offload", int),
}


@dataclass(frozen=True, slots=True)
class DbUrl:
    scheme: str  # sqlite, postgres, redis
    target: str  # a file path (sqlite) or the URL handed to the driver
    prefix: str  # prepended to every table name (and Redis key)
    layout: str = ""  # "kamailio" or "ksr" table layouts; "" = the backend's default
    limits: Limits = field(default_factory=Limits)  # pool, queue, timeout, breaker


def parse_db_url(url: str) -> DbUrl:
    """``sqlite:///abs/path``, ``sqlite://./rel.sqlite``, ``sqlite://:memory:``,
    ``postgres://user@host/db``, ``redis://host:port/0``,
    ``redis+sentinel://host:port,host:port/mastername[/db]`` (ksr/db/redis_connect.py); ``?prefix=x_`` on any of them, and
    ``?layout=kamailio|ksr`` (SQL only; see docs/storage.md)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or not rest:
        raise DbError(f"bad db_url {url!r} (expected sqlite://, postgres:// or redis://)")
    prefix = layout = ""
    tuned: dict[str, object] = {}
    if "?" in rest:
        rest, _, query = rest.partition("?")
        pairs = parse_qsl(query, keep_blank_values=True)
        prefix = "".join(v for k, v in pairs if k == "prefix")
        layout = "".join(v for k, v in pairs if k == "layout").lower()
        for k, v in pairs:
            if k in _LIMIT_OPTIONS:
                attr, kind = _LIMIT_OPTIONS[k]
                try:
                    value = kind(v)
                except ValueError:
                    raise DbError(f"db_url option {k}={v!r} must be a number") from None
                if value < 0 or (attr in ("pool", "timeout") and value <= 0):
                    raise DbError(f"db_url option {k}={v!r} is out of range")
                tuned[attr] = value
        driver = "".join(v for k, v in pairs if k == "driver").lower()
        if driver:
            if driver not in ("loop", "thread"):
                raise DbError(f"db_url driver {driver!r} must be loop or thread")
            tuned["driver"] = driver
        others = [
            (k, v)
            for k, v in pairs
            if k not in ("prefix", "layout", "driver") and k not in _LIMIT_OPTIONS
        ]
        if others:
            rest = rest + "?" + urlencode(others)
    if prefix and not prefix.replace("_", "").isalnum():
        raise DbError(f"db_url prefix {prefix!r} must be letters, digits and _")
    if layout not in ("", "kamailio", "ksr"):
        raise DbError(f"db_url layout {layout!r} must be kamailio or ksr")
    if "offload" in tuned:
        tuned["offload"] = bool(tuned["offload"])
    elif scheme == "sqlite":
        tuned["offload"] = False  # a local file: a thread hop costs more than the statement
    if scheme in ("postgres", "postgresql"):
        tuned.setdefault("driver", "loop")  # the event loop drives psycopg (ksr/db/pg_loop.py)
    elif tuned.get("driver") == "loop":
        raise DbError("db_url driver=loop is for PostgreSQL (other backends: driver=thread)")
    limits = Limits(**tuned)  # type: ignore[arg-type]
    if scheme == "sqlite":
        return DbUrl("sqlite", rest, prefix, layout or "kamailio", limits)
    if scheme in ("postgres", "postgresql"):
        parts = urlsplit(f"postgresql://{rest}")
        return DbUrl("postgres", urlunsplit(parts), prefix, layout or "kamailio", limits)
    if scheme in ("redis", "rediss", "redis+sentinel"):
        if layout == "kamailio":
            raise DbError("db_url layout=kamailio needs an SQL database (Redis keeps ksr's layout)")
        return DbUrl("redis", f"{scheme}://{rest}", prefix, "ksr", limits)
    raise DbError(f"unsupported db_url scheme {scheme!r} (use sqlite, postgres or redis)")
