"""Dialogs shared by the nodes of a cluster (dialog ``enable_dmq = 1``; docs/cluster.md).

The stored dialog table (``db_mode`` 1 on PostgreSQL or Redis) is what the nodes share. One node
holds a dialog in memory at a time (its holder: the creator, until another node takes it):

* a node that receives an in-dialog request for a dialog it does not hold reads the dialog's
  rows by Call-ID, takes it (holder = this node, written back) and says so on the cluster
  channel (the shared table ``dialog:moves``, operation ``moved(key, node)``,
  ksr/core/cluster.py); the node that held it drops its copy without an event. Two nodes
  taking one dialog at once end with the last one in Redis's order holding it;
* ending a dialog (BYE, timeout, RPC) first deletes its row: only the node whose delete removed
  the row runs dialog:end (and so writes the CDR); a node that finds the row gone drops its
  copy quietly. A dialog thus ends once in the cluster, whichever nodes see its BYE or time
  it out;
* the dialogs of a node that died are taken by a survivor (takeover.py), which times them out.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

from ksr.core.ratelog import RateLimitedLog
from ksr.core.replication import replicated
from ksr.db import DbError
from ksr.sip.dialog_state import DlgState

from .model import Dialog

if TYPE_CHECKING:
    from ksr.core.core_api import Core

    from .manager import DialogManager
    from .store import DialogStore

log = logging.getLogger("ksr.dialog")

CLAIMED: Final = 1 << 29  # Dialog.iflags: this node removed its row (it ends the dialog)
DROPPED: Final = 1 << 30  # Dialog.iflags: another node holds (or ended) it; this copy is inert
MISS_TTL = 1.0  # seconds a Call-ID found in no stored dialog is not looked up again
MISS_MAX = 10_000


def dialog_key(dlg: Dialog) -> str:
    return f"{dlg.h_entry}:{dlg.h_id}"


class DialogMoves:
    """The notice "node N holds dialog K now", for every worker of every node. Nothing is kept:
    the stored rows say who holds what; this only makes the previous holder let go."""

    CLUSTER_IDEMPOTENT = frozenset({"moved"})

    def __init__(self) -> None:
        self.on_moved: Any = lambda key, node: None

    @replicated
    def moved(self, key: str, node: int) -> None:
        self.on_moved(str(key), int(node))

    def replica_snapshot(self) -> None:
        return None

    def replica_restore(self, state: object) -> None:
        pass

    def cluster_change(self, op: str, args: tuple[Any, ...]) -> tuple[str, str, str]:
        return "del", str(args[0]), ""  # the channel carries it; the Redis hash keeps nothing

    def cluster_load(self, items: dict[str, Any]) -> list[str]:
        return list(items)


class SharedDialogs:
    """This node's side of the shared dialogs (see the module docstring)."""

    def __init__(self, server: Core, mgr: DialogManager, store: DialogStore) -> None:
        self.server = server
        self.mgr = mgr
        self.store = store
        self.node = server.config.core.server_id
        self.moves = DialogMoves()
        self.moves.on_moved = self.on_moved
        self._misses: OrderedDict[str, float] = OrderedDict()
        self.bad = RateLimitedLog(log)
        st = server.stats
        self.c_taken = st.counter(
            "dialog", "cluster_taken", doc="dialogs of other nodes taken over by this one"
        )
        self.c_released = st.counter(
            "dialog", "cluster_released", doc="dialogs this node let go (another node took them)"
        )
        self.c_lost = st.counter(
            "dialog", "cluster_ended_elsewhere", doc="dialogs found ended by another node"
        )
        self.c_errors = st.counter(
            "dialog", "cluster_store_errors", doc="shared dialog store reads/claims that failed"
        )

    # -- a request for a dialog this node does not hold ---------------------------------------
    def lookup(self, callid: str) -> bool:
        """Take the stored dialogs of ``callid`` that another node holds; True if any."""
        now = time.monotonic()
        seen = self._misses.get(callid)
        if seen is not None and now - seen < MISS_TTL:
            return False
        try:
            found = self.store.fetch(callid)
        except DbError as err:
            self.c_errors.inc()
            self.bad.log(logging.ERROR, "dialog: cannot read shared dialogs of %s: %s", callid, err)
            return False
        taken = 0
        for dlg in found:
            if dlg.state is DlgState.DELETED or dlg.key in self.mgr.table.by_key:
                continue
            self.adopt(dlg)
            taken += 1
        if not taken:
            self._misses[callid] = now
            self._misses.move_to_end(callid)
            while len(self._misses) > MISS_MAX:
                self._misses.popitem(last=False)
        return taken > 0

    def adopt(self, dlg: Dialog) -> None:
        """Hold a stored dialog here from now on (timers, profiles, storage)."""
        prev = dlg.holder
        dlg.owner = self.node
        dlg.iflags &= ~(CLAIMED | DROPPED)
        self.mgr.restore([dlg])
        self.mgr.persist(dlg)
        self.moves.moved(dialog_key(dlg), self.node)
        self.c_taken.inc()
        log.info("dialog %s (%s): taken from node %d", dlg.callid, dialog_key(dlg), prev)

    def on_moved(self, key: str, node: int) -> None:
        if node == self.node:
            return
        he, _, hid = key.partition(":")
        try:
            dlg = self.mgr.table.get(int(he), int(hid))
        except ValueError:  # the cluster logs and counts it (cluster:bad_messages)
            raise ValueError(f"bad dialog key {key!r}") from None
        if dlg is None or dlg.state is DlgState.DELETED:
            return
        self.mgr.drop(dlg)
        self.c_released.inc()
        log.info("dialog %s (%s): now held by node %d", dlg.callid, key, node)

    # -- ending once --------------------------------------------------------------------------
    def claim(self, dlg: Dialog) -> bool:
        """Whether this node ends the dialog: it removes the dialog's row first. False (the
        copy is dropped by the caller) when the row was gone: another node ended it."""
        if dlg.iflags & CLAIMED:
            return True
        try:
            won = self.store.claim(dlg)
        except DbError as err:
            # the store is away: end it here (its row is removed when the store is back); a
            # node that also ends it meanwhile writes a second CDR, so say so
            self.c_errors.inc()
            self.bad.log(
                logging.ERROR,
                "dialog %s: cannot claim its end in the shared store (%s); ending it here",
                dlg.callid,
                err,
            )
            self.store.dirty[dialog_key(dlg)] = dlg
            won = True
        if won:
            dlg.iflags |= CLAIMED
        else:
            self.c_lost.inc()
            log.info("dialog %s (%s): already ended by another node", dlg.callid, dialog_key(dlg))
        return won

    def recheck(self, dlg: Dialog) -> bool:
        """Before timing a dialog out: is it still stored, and due? Another node may have
        ended it, or extended it (a notice lost while Redis was away). False: not now."""
        try:
            stored = [d for d in self.store.fetch(dlg.callid) if d.key == dlg.key]
        except DbError as err:
            self.c_errors.inc()
            self.bad.log(
                logging.ERROR, "dialog %s: cannot check its stored copy: %s", dlg.callid, err
            )
            return True
        if not stored:
            self.c_lost.inc()
            self.mgr.drop(dlg)
            return False
        if stored[0].timeout_ts > dlg.timeout_ts:  # a node that held it meanwhile extended it
            dlg.timeout_ts = stored[0].timeout_ts
        return True
