"""Statistics: counters and gauges that modules register, named ``group:name`` as in Kamailio."""

from __future__ import annotations

from collections.abc import Callable


class Counter:
    __slots__ = ("value", "resettable")

    def __init__(self, resettable: bool = True) -> None:
        self.value = 0
        self.resettable = resettable

    def inc(self, n: int = 1) -> None:
        self.value += n


class Stats:
    def __init__(self) -> None:
        self._counters: dict[str, dict[str, Counter]] = {}
        self._gauges: dict[str, dict[str, Callable[[], int]]] = {}

    def counter(self, group: str, name: str, resettable: bool = True) -> Counter:
        grp = self._counters.setdefault(group, {})
        c = grp.get(name)
        if c is None:
            c = grp[name] = Counter(resettable)
        return c

    def gauge(self, group: str, name: str, read: Callable[[], int]) -> None:
        """A value computed when read (active dialogs, registered users...). Never reset."""
        self._gauges.setdefault(group, {})[name] = read

    def groups(self) -> list[str]:
        return sorted(set(self._counters) | set(self._gauges))

    def items(self, group: str) -> list[tuple[str, int]]:
        out = [(n, c.value) for n, c in self._counters.get(group, {}).items()]
        for n, read in self._gauges.get(group, {}).items():
            try:
                out.append((n, int(read())))
            except Exception:
                out.append((n, 0))
        return sorted(out)

    def value(self, group: str, name: str) -> int | None:
        for n, v in self.items(group):
            if n == name:
                return v
        return None

    def select(self, spec: str) -> list[tuple[str, str, int]]:
        """``all``, ``group:`` or ``group:name`` (or a bare name searched in every group)."""
        out: list[tuple[str, str, int]] = []
        if spec == "all":
            for g in self.groups():
                out.extend((g, n, v) for n, v in self.items(g))
        elif spec.endswith(":"):
            g = spec[:-1]
            out.extend((g, n, v) for n, v in self.items(g))
        elif ":" in spec:
            g, _, name = spec.partition(":")
            v = self.value(g, name)
            if v is not None:
                out.append((g, name, v))
        else:
            for g in self.groups():
                v = self.value(g, spec)
                if v is not None:
                    out.append((g, spec, v))
        return out

    def reset(self, spec: str) -> int:
        n = 0
        for g, name, _ in self.select(spec):
            c = self._counters.get(g, {}).get(name)
            if c is not None and c.resettable:
                c.value = 0
                n += 1
        return n
