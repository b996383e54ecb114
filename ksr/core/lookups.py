"""The DNS front end of the server: where a URI sends to, never blocking the event loop.

``ksr.core.resolver`` does the work (IP literals, its cache, RFC 3263 lookups); these calls
add the server's nursery, so a lookup that must ask DNS runs in a task and calls back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .context import Destination
from .resolver import ASK

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("ksr")


class Lookups:
    """``Server.resolve*``: answers known now, and DNS lookups in tasks."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.resolver = server.resolver

    def resolve(self, uri: str) -> Destination | None:
        """Where a SIP URI sends to, if that is known now (IP literal, cached DNS answer); None
        otherwise, and a name not known yet is looked up in the background for the next call.
        Never waits for DNS: see ``resolve_now`` and ``resolve_later``."""
        found = self.resolver.now(uri)
        nursery = self.server.nursery
        if found == ASK and nursery is not None:
            nursery.start_soon(self.resolver.lookup, uri)
        return found if isinstance(found, Destination) else None

    def resolve_now(self, uri: str) -> Destination | None | str:
        """The destination of ``uri`` if known now, None if it cannot be resolved, or ``ASK``
        (``ksr.core.resolver.ASK``) when DNS must be asked (then use ``resolve_later``)."""
        return self.resolver.now(uri)

    def resolve_now_all(self, uri: str) -> list[Destination] | str:
        """``resolve_now`` with every destination in RFC 3263 order (failover targets after
        the first); an empty list if the URI cannot be resolved, or ``ASK``."""
        return self.resolver.now_all(uri)

    def resolve_later(self, uri: str, done: Callable[[Destination | None], None]) -> None:
        """Resolve ``uri`` through DNS (RFC 3263) in a task on the server nursery, then call
        ``done(destination)`` (None: unresolvable or ``dns_timeout``) on the event loop."""
        self.resolve_later_all(uri, lambda found: done(found[0] if found else None))

    def resolve_later_all(self, uri: str, done: Callable[[list[Destination]], None]) -> None:
        """``resolve_later`` with every destination in RFC 3263 order (empty: unresolvable)."""

        async def task() -> None:
            found = await self.resolver.lookup_all(uri)
            try:
                done(found)
            except Exception:
                log.exception("after resolving %s", uri)

        nursery = self.server.nursery
        if nursery is None:
            log.error("cannot resolve %s: the server is not running", uri)
            done([])
            return
        nursery.start_soon(task)
