"""The in-memory dialog table and the profiles (indexes by id and by Call-ID/tags)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from ksr.core.hashes import core_hash
from ksr.core.replication import replicated
from ksr.sip.dialog_state import DlgState

from .model import Dialog

NODE_SHIFT = 24  # a dialog id's top byte is the server_id of the node that made it
LOCAL_MASK = (1 << NODE_SHIFT) - 1


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


class Profiles:
    """Kamailio's dialog profiles: named sets of dialogs, with or without a value.

    A dialog may be added to a profile more than once (each addition counts, as in Kamailio).
    Entries leave their profile when the dialog ends. With worker processes the sizes are a
    shared table (docs/workers.md): each worker counts the dialogs it owns under its index,
    every worker sees every worker's counts, so ``get_profile_size`` in a script counts the
    calls of the whole server."""

    def __init__(self, no_value: list[str], with_value: list[str]) -> None:
        self.no_value = set(no_value)
        self.with_value = set(with_value)
        self.names = self.no_value | self.with_value
        self.owner = 0  # the index of this worker process: its dialogs count under it
        self._sizes: dict[int, dict[str, Counter[str]]] = {}  # owner -> profile -> value -> n
        # other nodes' totals (shared dialogs, cluster_profiles.py): node -> profile -> value -> n
        self.remote: dict[int, dict[str, Counter[str]]] = {}

    def known(self, name: str) -> bool:
        return name in self.names

    def has_value(self, name: str) -> bool:
        return name in self.with_value

    @replicated
    def count(self, owner: int, name: str, value: str, delta: int) -> None:
        c = self._sizes.setdefault(owner, {}).setdefault(name, Counter())
        n = c[value] + delta
        if n > 0:
            c[value] = n
        else:
            del c[value]

    @replicated
    def forget(self, owner: int) -> None:
        """A worker (re)started: the counts of its previous life end with its dialogs."""
        self._sizes.pop(owner, None)

    def replica_snapshot(self) -> dict[int, dict[str, dict[str, int]]]:
        return {o: {n: dict(c) for n, c in by.items()} for o, by in self._sizes.items()}

    def replica_restore(self, state: dict[int, dict[str, dict[str, int]]]) -> None:
        self._sizes = {int(o): {n: Counter(c) for n, c in by.items()} for o, by in state.items()}

    def add(self, dlg: Dialog, name: str, value: str) -> None:
        dlg.profiles.append((name, value))
        self.count(self.owner, name, value, 1)

    def remove(self, dlg: Dialog, name: str, value: str | None) -> bool:
        for i, (n, v) in enumerate(dlg.profiles):
            if n == name and (value is None or v == value):
                del dlg.profiles[i]
                self._drop(n, v)
                return True
        return False

    def release(self, dlg: Dialog) -> None:
        for n, v in dlg.profiles:
            self._drop(n, v)
        # the list stays on the dialog: dlg.list of an ended dialog still shows it

    def relink(self, dlg: Dialog) -> None:
        """Count a dialog loaded from storage."""
        for n, v in dlg.profiles:
            if n in self.names:
                self.count(self.owner, n, v, 1)

    def _drop(self, name: str, value: str) -> None:
        c = self._sizes.get(self.owner, {}).get(name)
        if c is not None and c[value] > 0:
            self.count(self.owner, name, value, -1)

    def size(self, name: str, value: str | None = None) -> int:
        total = 0
        for by in (*self._sizes.values(), *self.remote.values()):
            c = by.get(name)
            if c is not None:
                total += sum(c.values()) if value is None else c.get(value, 0)
        return total

    def contains(self, dlg: Dialog, name: str, value: str | None) -> bool:
        return any(n == name and (value is None or v == value) for n, v in dlg.profiles)


def split_names(text: str) -> list[str]:
    """``"a ; b;c"`` -> ["a", "b", "c"] (Kamailio's profile list syntax)."""
    return [p.strip() for p in text.split(";") if p.strip()]
