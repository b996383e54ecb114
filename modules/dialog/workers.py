"""Dialogs of other worker processes (``ksr run -n N``, docs/workers.md).

Every message of a call reaches the worker that owns the call, so a dialog's own messages
always find it. A script may also name *another* dialog: ``dlg_get_var``/``dlg_set_var`` by
Call-ID and tags, ``dlg_set_timeout_id`` by ids. When that dialog is not in this worker, the
call asks the worker that holds it (the Call-ID's owner first, then the others) over the
hand-off socket, and the route waits meanwhile (``ksr.suspend.wait``): the answer is the same
whichever worker runs the script. Where a route cannot wait (event routes fired inside a KSR
call, timers), only this worker's dialogs are seen.

The other worker runs the ``dlg.ksr_*`` RPC commands below (also usable over JSON-RPC).
"""

from __future__ import annotations

import logging
from typing import Any

from ksr.core.rpc import RpcError, rpc
from ksr.sip.dialog_state import DlgState
from ksr.sip.owner import call_id_owner
from ksr.suspend import can_suspend, wait

from .manager import DialogManager
from .model import Dialog
from .table import LOCAL_MASK

log = logging.getLogger("ksr.dialog")

MISSING = object()  # no worker holds the dialog (or none could be asked)


class DialogWorkers:
    """Mixed into the dialog module; ``self.mgr`` is its DialogManager."""

    mgr: DialogManager
    server: Any

    # -- in the worker that holds the dialog --------------------------------------------------
    def _by_tags(self, callid: str, ftag: str, ttag: str) -> Dialog | None:
        found = self.mgr.table.find(str(callid), str(ftag), str(ttag) or None)
        return found[0] if found else None

    @rpc("dlg.ksr_get_var")
    def rpc_ksr_get_var(self, callid: str, ftag: str, ttag: str, key: str) -> dict[str, Any]:
        """A variable of the dialog with these Call-ID and tags, if this worker holds it."""
        d = self._by_tags(callid, ftag, ttag)
        if d is None:
            raise RpcError(404, "Dialog not found")
        return {"value": d.variables.get(str(key))}

    @rpc("dlg.ksr_set_var")
    def rpc_ksr_set_var(self, callid: str, ftag: str, ttag: str, key: str, value: str) -> str:
        """Set a variable of the dialog with these Call-ID and tags, if this worker holds it."""
        d = self._by_tags(callid, ftag, ttag)
        if d is None:
            raise RpcError(404, "Dialog not found")
        d.variables[str(key)] = str(value)
        self.mgr.persist(d)
        return "OK"

    @rpc("dlg.ksr_set_timeout")
    def rpc_ksr_set_timeout(self, h_entry: int | str, h_id: int | str, seconds: int | str) -> str:
        """dlg_set_timeout for the dialog with these ids, if this worker holds it."""
        try:
            d = self.mgr.table.get(int(h_entry), int(h_id))
            secs = int(seconds)
        except (TypeError, ValueError):
            raise RpcError(400, "Bad dialog id") from None
        if d is None or d.state is DlgState.DELETED:
            raise RpcError(404, "Dialog not found")
        self.mgr.set_timeout(d, secs)
        return "OK"

    # -- in the worker running the script ------------------------------------------------------
    def may_wait(self, name: str) -> bool:
        """The KSR calls wait only to ask another worker: never without worker processes
        (a script engine then runs routes as plain calls, docs/suspend.md)."""
        h = self.server.handoff
        return h is not None and h.count >= 2

    def _others(self, first: int | None) -> list[int]:
        """The other workers, ``first`` first; [] without worker processes."""
        h = self.server.handoff
        if h is None or h.count < 2:
            return []
        rest = [i for i in range(h.count) if i != h.index and i != first]
        return ([first] if first is not None and first != h.index else []) + rest

    def _ask_others(self, first: int | None, method: str, params: list[Any]) -> Any:
        """The result of ``method`` from the first other worker that has the dialog, or
        MISSING. The route waits; where it cannot, nobody is asked."""
        workers = self._others(first)
        if not workers:
            return MISSING
        if not can_suspend():
            log.debug("dialog: %s outside a route that can wait: other workers not asked", method)
            return MISSING
        h = self.server.handoff
        for w in workers:
            reply = wait(lambda w=w: h.call(w, method, params))  # type: ignore[misc]
            if reply is not None and "result" in reply:
                return reply["result"]
        return MISSING

    def _owner_of_callid(self, callid: str) -> int | None:
        h = self.server.handoff
        return None if h is None or h.count < 2 else call_id_owner(callid, h.count)

    def _owner_of_id(self, h_id: int) -> int | None:
        """Worker k of N numbers its dialogs k+1, k+1+N, ... (table.py)."""
        h = self.server.handoff
        if h is None or h.count < 2:
            return None
        return ((h_id & LOCAL_MASK) - 1) % h.count

    def remote_get_var(self, callid: str, ftag: str, ttag: str, key: str) -> Any:
        r = self._ask_others(
            self._owner_of_callid(callid), "dlg.ksr_get_var", [callid, ftag, ttag, key]
        )
        return r["value"] if isinstance(r, dict) else MISSING

    def remote_set_var(self, callid: str, ftag: str, ttag: str, key: str, value: str) -> bool:
        r = self._ask_others(
            self._owner_of_callid(callid), "dlg.ksr_set_var", [callid, ftag, ttag, key, value]
        )
        return r is not MISSING

    def remote_set_timeout(self, h_entry: int, h_id: int, seconds: int) -> bool:
        r = self._ask_others(
            self._owner_of_id(h_id), "dlg.ksr_set_timeout", [h_entry, h_id, seconds]
        )
        return r is not MISSING
