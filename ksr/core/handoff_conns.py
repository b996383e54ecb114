"""Stream connections held by other workers (ksr run -n N), as a table: no I/O.

A worker that handles a message handed over from a TCP/TLS/WS connection of another worker
gives that connection a pseudo id here, so replies and later requests to the same peer go back
through the worker that holds it (docs/workers.md)."""

from __future__ import annotations

import itertools
from collections import OrderedDict

REMOTE_BASE = 1 << 48  # pseudo connection ids: a stream connection held by another worker
MAX_REMOTE = 20_000  # remote connections remembered per worker


class RemoteConns:
    """Pseudo id <-> (worker, their connection id, peer host, peer port), and by peer."""

    def __init__(self, limit: int = MAX_REMOTE) -> None:
        self.limit = limit
        self.by_id: OrderedDict[int, tuple[int, int, str, int]] = OrderedDict()
        self.by_peer: dict[tuple[str, int], int] = {}
        self._ids = itertools.count(REMOTE_BASE)

    def pseudo(self, worker: int, conn_id: int, host: str, port: int) -> int:
        pid = self.by_peer.get((host, port))
        if pid is not None and self.by_id.get(pid, (None, None))[:2] == (worker, conn_id):
            self.by_id.move_to_end(pid)
            return pid
        pid = next(self._ids)
        self.by_id[pid] = (worker, conn_id, host, port)
        self.by_peer[(host, port)] = pid
        while len(self.by_id) > self.limit:
            _, (_, _, h, p) = self.by_id.popitem(last=False)
            if self.by_peer.get((h, p)) not in self.by_id:
                self.by_peer.pop((h, p), None)
        return pid

    def target(self, conn_id: int) -> tuple[int, int] | None:
        """(worker, its connection id) of a pseudo id."""
        t = self.by_id.get(conn_id)
        return (t[0], t[1]) if t is not None else None

    def by_address(self, host: str, port: int) -> tuple[int, int] | None:
        pid = self.by_peer.get((host, port))
        return self.target(pid) if pid is not None else None
