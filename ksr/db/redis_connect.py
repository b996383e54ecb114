"""A redis-py client from a ``redis://`` URL (ksr's ``?prefix=`` left out)."""

from __future__ import annotations

from typing import Any

from .url import parse_db_url


def connect(url: str, timeout: float = 3.0) -> Any:
    """A client for ``url``; it connects on first use (redis-py reconnects by itself)."""
    import redis

    target = parse_db_url(url).target
    return redis.Redis.from_url(
        target,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        encoding_errors="replace",  # bytes a peer wrote never stop a reader
    )
