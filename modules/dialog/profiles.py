"""The dialog profiles (dlg_manage's counters by name and value).

Not compiled with the dialog table (ksr/native.py): ``@replicated`` writes find the worker's
replication link in the instance's ``__dict__``, which a compiled class has not.
"""

from __future__ import annotations

from collections import Counter

from ksr.core.replication import replicated

from .model import Dialog


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
