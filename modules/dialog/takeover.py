"""The dialogs of a node that died are taken by one survivor (dialog ``enable_dmq = 1``).

The cluster's heartbeats (ksr/core/cluster_nodes.py) declare a node dead once, in every worker
of every live node; ``claim`` lets one node act. Each worker of that node reads the stored
dialogs, takes those the dead node held whose Call-ID it owns (worker processes,
docs/workers.md) and runs them as its own: in-dialog requests are matched here, and each one
is timed out when its lifetime ends, with a BYE to both sides (the node that could have relayed
them is gone) and its one CDR. A node started again with the dead one's server_id before the
takeover (on its address, as keepalived would) restores them itself; the survivor then leaves
them to it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ksr.db import DbError
from ksr.sip.dialog_state import DlgState
from ksr.sip.owner import call_id_owner

if TYPE_CHECKING:
    from ksr.core.cluster_nodes import NodeInfo
    from ksr.core.core_api import Core

    from .cluster import SharedDialogs

log = logging.getLogger("ksr.dialog")


class Takeover:
    def __init__(self, server: Core, shared: SharedDialogs) -> None:
        self.server = server
        self.shared = shared
        self.nodes = server.cluster.nodes

    def attach(self) -> None:
        self.nodes.on_dead(self.on_dead)

    def mine(self, callid: str) -> bool:
        h = self.server.handoff
        return h is None or call_id_owner(callid, h.count) == h.index

    async def on_dead(self, node: NodeInfo) -> None:
        sid = node.server_id
        if sid == self.shared.node or self.nodes.is_alive(sid):
            return  # started again meanwhile: it restored its dialogs itself
        if not await self.nodes.claim(node, "dialogs"):
            return
        self.take(sid)

    def take(self, dead: int) -> int:
        """Take the stored dialogs node ``dead`` held (this worker's Call-IDs); how many."""
        try:
            stored = self.shared.store.load()
        except DbError as err:
            self.shared.c_errors.inc()
            log.error("dialog: cannot read the dialogs of dead node %d: %s", dead, err)
            return 0
        n = 0
        table = self.shared.mgr.table
        for dlg in stored:
            if dlg.holder != dead or dlg.state is DlgState.DELETED or dlg.key in table.by_key:
                continue
            if not self.mine(dlg.callid):
                continue
            dlg.timeout_bye = True  # nobody relays for the dead node: end both sides
            self.shared.adopt(dlg)
            n += 1
        if n:
            log.warning("dialog: took %d dialogs of dead node %d", n, dead)
        return n
