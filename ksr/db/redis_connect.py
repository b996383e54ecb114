"""A redis-py client from a URL (ksr's ``?prefix=`` left out):

* ``redis://[:password@]host:port/db`` (or ``rediss://``): one server;
* ``redis+sentinel://[:password@]host:port,host:port/mastername[/db]``: the master that the
  Sentinels name. Every new connection asks them where the master is, so after a failover the
  next command (redis-py reconnects after a connection error, or after the old master answers
  READONLY) goes to the new master.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from .base import DbError
from .url import parse_db_url

SENTINEL = "redis+sentinel"


def sentinel_parts(target: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """(sentinels, master name, db, password) of a ``redis+sentinel://`` URL."""
    parts = urlsplit(target)
    password = unquote(parts.password) if parts.password else None
    hosts = parts.netloc.rpartition("@")[2]
    sentinels: list[tuple[str, int]] = []
    for hp in hosts.split(","):
        host, _, port = hp.strip().rpartition(":")
        if not host or not port.isdigit():
            raise DbError(f"bad sentinel address {hp!r} in {target!r} (want host:port,...)")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise DbError(f"{target!r}: want redis+sentinel://host:port,.../mastername[/db]")
    return sentinels, path[0], int(path[1]) if len(path) == 2 else 0, password


def connect(url: str, timeout: float = 3.0, **extra: Any) -> Any:
    """A client for ``url``; it connects on first use (redis-py reconnects by itself).
    ``extra``: more redis-py connection arguments (max_connections...)."""
    import redis

    target = parse_db_url(url).target
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
        "encoding_errors": "replace",  # bytes a peer wrote never stop a reader
        **extra,
    }
    if target.startswith(SENTINEL + "://"):
        from redis.sentinel import Sentinel

        sentinels, master, db, password = sentinel_parts(target)
        s = Sentinel(
            sentinels,
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
        )
        return s.master_for(master, db=db, password=password, **common)
    return redis.Redis.from_url(target, **common)
