"""The in-memory dialog table (indexes by id and by Call-ID/tags); the profiles are in
profiles.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Final

from ksr.core.hashes import core_hash
from ksr.sip.dialog_state import DlgState

from .model import Dialog

NODE_SHIFT: Final = 24  # a dialog id's top byte is the server_id of the node that made it
LOCAL_MASK: Final = (1 << NODE_SHIFT) - 1


def node_of(h_id: int) -> int:
    """The server_id of the node that created the dialog with this id."""
    return (h_id >> NODE_SHIFT) & 0xFF


class DialogTable:
    def __init__(self, hash_size: int = 4096, server_id: int = 0) -> None:
        # a power of two, as Kamailio rounds it: stored slots then match Kamailio's
        self.hash_size = 1 << (max(1, hash_size).bit_length() - 1)
        self.by_key: dict[tuple[int, int], Dialog] = {}
        self.by_callid: dict[str, list[Dialog]] = {}
        self._next_id = 1
        # worker processes (docs/workers.md) share the dialog table of the database: worker k
        # of N uses the ids k+1, k+1+N, ... so that stored ids never collide
        self.id_step, self.id_offset = 1, 0
        # nodes of a cluster share it too: each one's ids carry its server_id in the top byte
        self.server_id = server_id
        self._node_bits = server_id << NODE_SHIFT

    def share_ids(self, worker: int, workers: int) -> None:
        self.id_step, self.id_offset = max(1, workers), worker

    def mine(self, dlg: Dialog) -> bool:
        """Whether this node holds the dialog (a shared table holds other nodes' too): it made
        it, or took it from another node (shared dialogs, cluster.py)."""
        return dlg.holder == self.server_id

    def new_key(self, callid: str) -> tuple[int, int]:
        h_entry = core_hash(callid, self.hash_size)  # Kamailio's slot of this Call-ID
        step = self.id_step
        n = self._next_id + (self.id_offset - (self._next_id - 1)) % step
        while True:
            if n > LOCAL_MASK:  # wrapped: start again at this worker's first id
                n = self.id_offset + 1
            h_id = self._node_bits | n
            if (h_entry, h_id) not in self.by_key:
                break
            n += step
        self._next_id = n + 1
        return h_entry, h_id

    def add(self, dlg: Dialog) -> None:
        self.by_key[dlg.key] = dlg
        self.by_callid.setdefault(dlg.callid, []).append(dlg)
        if node_of(dlg.h_id) == self.server_id:  # made here (maybe in a previous run)
            self._next_id = max(self._next_id, (dlg.h_id & LOCAL_MASK) + 1)

    def remove(self, dlg: Dialog) -> None:
        self.by_key.pop(dlg.key, None)
        lst = self.by_callid.get(dlg.callid)
        if lst is not None:
            lst[:] = [d for d in lst if d is not dlg]
            if not lst:
                del self.by_callid[dlg.callid]

    def get(self, h_entry: int, h_id: int) -> Dialog | None:
        return self.by_key.get((h_entry, h_id))

    def find(self, callid: str, ftag: str, ttag: str | None) -> tuple[Dialog, bool] | None:
        """The dialog of these identifiers and whether the request goes downstream (caller to
        callee). A request may come from either side, so the tags may be swapped."""
        for d in reversed(self.by_callid.get(callid, [])):
            if d.caller.tag == ftag and (not ttag or not d.callee.tag or d.callee.tag == ttag):
                return d, True
            if ttag and d.caller.tag == ttag and (not d.callee.tag or d.callee.tag == ftag):
                return d, False
        return None

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self.by_key.values()))

    def __len__(self) -> int:
        return len(self.by_key)

    def count_states(self) -> Counter[DlgState]:
        return Counter(d.state for d in self.by_key.values())


def split_names(text: str) -> list[str]:
    """``"a ; b;c"`` -> ["a", "b", "c"] (Kamailio's profile list syntax)."""
    return [p.strip() for p in text.split(";") if p.strip()]
