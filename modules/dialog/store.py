"""Dialog persistence through ksr.db (SQLite, PostgreSQL, Redis), per Kamailio's ``db_mode``:

* 0 - none;
* 1 - realtime: every change is written when it happens;
* 2 - delayed: changed dialogs are written every ``db_update_period`` seconds (and at shutdown);
* 3 - shutdown: everything is written when ksr stops.

With any mode but 0, ksr loads the stored dialogs at start-up. On SQL stores (layout=kamailio,
the default) a dialog is a row of Kamailio's ``dialog`` table and its variables rows of
``dialog_vars`` (kamrows.py). In ksr's own layout (Redis, layout=ksr) a dialog is one row: its
identifiers, its state and a JSON document with the rest (legs, times, variables, profiles).
Ended dialogs are removed. A failed write is logged and kept dirty for the next attempt.
"""

from __future__ import annotations

import json
import logging

from ksr.db import DbError, Row, Store, TableSpec
from ksr.sip.dialog_state import DlgState

from .kamrows import KamDialogRows
from .model import Dialog

log = logging.getLogger("ksr.dialog")

SPEC = TableSpec(
    "dialog",
    key="id",
    fields=(("id", "str"), ("callid", "str"), ("state", "int"), ("data", "str")),
    indexes=("callid",),
)


def row_id(dlg: Dialog) -> str:
    return f"{dlg.h_entry}:{dlg.h_id}"


class DialogStore:
    def __init__(
        self,
        store: Store,
        mode: int,
        table_name: str = "dialog",
        vars_table_name: str = "dialog_vars",
    ) -> None:
        self.mode = mode
        self.kam: KamDialogRows | None = None
        if store.layout == "kamailio":
            self.kam = KamDialogRows(store, table_name, vars_table_name)
        else:
            self.table = store.table(SPEC.renamed(table_name))
        self.dirty: dict[str, Dialog] = {}
        self.failed_writes = 0

    def changed(self, dlg: Dialog) -> None:
        self.dirty[row_id(dlg)] = dlg
        if self.mode == 1:
            self.flush()

    def flush(self) -> int:
        """Write every changed dialog; returns how many are still waiting (backend down)."""
        for rid, dlg in list(self.dirty.items()):
            try:
                if self.kam is not None:
                    if dlg.state is DlgState.DELETED:
                        self.kam.remove(dlg)
                    else:
                        self.kam.write(dlg)
                elif dlg.state is DlgState.DELETED:
                    self.table.delete(rid)
                else:
                    self.table.put(
                        {
                            "id": rid,
                            "callid": dlg.callid,
                            "state": int(dlg.state),
                            "data": json.dumps(dlg.to_dict()),
                        }
                    )
            except DbError as err:
                self.failed_writes += 1
                if self.failed_writes == 1 or self.failed_writes % 100 == 0:
                    log.error(
                        "dialog storage write failed (%d dialogs waiting): %s", len(self.dirty), err
                    )
                return len(self.dirty)
            if self.dirty.get(rid) is dlg:
                del self.dirty[rid]
        if self.failed_writes:
            log.warning("dialog storage is writable again")
            self.failed_writes = 0
        return 0

    def fetch(self, callid: str) -> list[Dialog]:
        """The stored dialogs of one Call-ID. DbError when the store cannot be read."""
        if self.kam is not None:
            return self.kam.fetch(callid)
        return [d for d in (self._read(r) for r in self.table.find("callid", callid)) if d]

    def claim(self, dlg: Dialog) -> bool:
        """Remove the stored dialog at once; True if this node removed it, False if it was
        gone already (another node ended it). DbError when the store cannot be reached."""
        rid = row_id(dlg)
        unwritten = self.dirty.pop(rid, None) is not None
        removed = self.kam.claim(dlg) if self.kam is not None else self.table.delete(rid)
        # a dialog whose writes were waiting (the store was away) may never have had a row:
        # this node ends it rather than lose its CDR
        return removed or unwritten

    def _read(self, row: Row) -> Dialog | None:
        try:
            return Dialog.from_dict(json.loads(str(row["data"])))
        except (ValueError, TypeError, KeyError) as err:
            log.error("skipping unreadable stored dialog %s: %s", row.get("id"), err)
            return None

    def load(self) -> list[Dialog]:
        if self.kam is not None:
            return self.kam.load()
        return [d for d in (self._read(r) for r in self.table.all()) if d]
