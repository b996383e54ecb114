"""Extended AVPs: ``$xavp`` (list of items with multi-value fields), ``$xavu`` (single value per
name) and ``$xavi`` (names case-insensitive), as Kamailio's xavp.c.

Storage is a plain dict ``root -> [item, ...]`` with index 0 the newest item; an item is a dict
``field -> [value, ...]`` with index 0 the newest value. A root that holds a plain value (set with
``KSR.pvx.xavp_seti``) keeps it under the field ``""``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Scalar = int | str
Item = dict[str, list[Scalar]]
Roots = dict[str, list[Item]]
VALUE_FIELD = ""

# root[idx]=>field[idx]; indices optional (Kamailio's xavp name syntax).
_NAME = re.compile(
    r"^\s*([^\[\]=>\s]+)\s*(?:\[(-?\d+|\*)\])?\s*(?:=>\s*([^\[\]\s]+)\s*(?:\[(-?\d+|\*)\])?)?\s*$"
)


class XavpName:
    __slots__ = ("root", "ridx", "field", "fidx")

    def __init__(self, root: str, ridx: int | None, field: str | None, fidx: int | None) -> None:
        self.root = root
        self.ridx = ridx
        self.field = field
        self.fidx = fidx


ALL_IDX = -(10**9)


def _idx(text: str | None) -> int | None:
    if text is None:
        return None
    return ALL_IDX if text == "*" else int(text)


def parse_name(text: str) -> XavpName | None:
    m = _NAME.match(text)
    if not m:
        return None
    return XavpName(m.group(1), _idx(m.group(2)), m.group(3), _idx(m.group(4)))


def _at(seq: Sequence[object], idx: int) -> int | None:
    """Position for a Kamailio index (negative counts from the oldest end)."""
    pos = idx if idx >= 0 else len(seq) + idx
    return pos if 0 <= pos < len(seq) else None


class XavpStore:
    """Operations on one family of roots (xavp, xavu or xavi)."""

    def __init__(self, data: Roots, fold_case: bool = False, single: bool = False) -> None:
        self.data = data
        self.fold = fold_case
        self.single = single

    def _k(self, name: str) -> str:
        return name.lower() if self.fold else name

    # -- items ---------------------------------------------------------------------------------
    def items(self, root: str) -> list[Item]:
        return self.data.get(self._k(root), [])

    def item(self, root: str, idx: int | None) -> Item | None:
        items = self.items(root)
        if not items:
            return None
        pos = _at(items, 0 if idx is None or idx == ALL_IDX else idx)
        return items[pos] if pos is not None else None

    # -- reading ---------------------------------------------------------------------------------
    def get(self, n: XavpName) -> int | str | None:
        it = self.item(n.root, n.ridx)
        if it is None:
            return None
        if n.field is None:
            vals = it.get(VALUE_FIELD)
            if vals is not None and len(it) == 1:
                return vals[0] if vals else None
            return f"<<xavp:{n.root}>>"
        vals = it.get(self._k(n.field))
        if not vals:
            return None
        if n.fidx == ALL_IDX:
            return ",".join(str(v) for v in vals)
        pos = _at(vals, n.fidx or 0)
        return vals[pos] if pos is not None else None

    def field_get(self, root: str, field: str) -> int | str | None:
        return self.get(XavpName(root, None, field, None))

    def keys(self, root: str, idx: int) -> list[str] | None:
        it = self.item(root, idx)
        if it is None:
            return None
        return [k for k in it if k != VALUE_FIELD]

    def as_dicts(self, root: str) -> list[dict[str, list[Scalar]]]:
        return [{k: list(v) for k, v in it.items() if k != VALUE_FIELD} for it in self.items(root)]

    # -- writing ---------------------------------------------------------------------------------
    def set(self, n: XavpName, value: Scalar | None) -> bool:
        if value is None:
            return self.unset(n)
        key = self._k(n.root)
        items = self.data.setdefault(key, [])
        if self.single:
            if not items:
                items.append({})
            field = VALUE_FIELD if n.field is None else self._k(n.field)
            if n.field is None:
                items[0] = {VALUE_FIELD: [value]}
            else:
                items[0].pop(VALUE_FIELD, None)
                items[0][field] = [value]
            return True
        if n.field is None:
            if n.ridx is not None:
                pos = _at(items, n.ridx)
                if pos is None:
                    return False
                items[pos] = {VALUE_FIELD: [value]}
                return True
            items.insert(0, {VALUE_FIELD: [value]})
            return True
        field = self._k(n.field)
        if n.ridx is None:
            items.insert(0, {field: [value]})
            return True
        pos = _at(items, n.ridx)
        if pos is None:
            if not items and n.ridx in (0, -1):
                items.insert(0, {field: [value]})
                return True
            return False
        vals = items[pos].setdefault(field, [])
        if n.fidx is not None and n.fidx != ALL_IDX:
            fpos = _at(vals, n.fidx)
            if fpos is None:
                return False
            vals[fpos] = value
        else:
            vals.insert(0, value)
        return True

    def child_set(self, root: str, field: str, value: Scalar) -> bool:
        """Add a field value to the first item (xavu: replace), creating the root when missing."""
        items = self.data.setdefault(self._k(root), [])
        if not items:
            items.insert(0, {})
        items[0].pop(VALUE_FIELD, None)
        if self.single:
            items[0][self._k(field)] = [value]
        else:
            items[0].setdefault(self._k(field), []).insert(0, value)
        return True

    def unset(self, n: XavpName) -> bool:
        key = self._k(n.root)
        items = self.data.get(key)
        if not items:
            return True
        if n.field is None:
            if n.ridx is None or n.ridx == ALL_IDX:
                del self.data[key]
            else:
                pos = _at(items, n.ridx)
                if pos is not None:
                    del items[pos]
                if not items:
                    del self.data[key]
            return True
        targets = items if n.ridx == ALL_IDX else [self.item(n.root, n.ridx)]
        fk = self._k(n.field)
        for it in targets:
            if it is None or fk not in it:
                continue
            if n.fidx is None or n.fidx == ALL_IDX:
                del it[fk]
            else:
                vals = it[fk]
                pos = _at(vals, n.fidx)
                if pos is not None:
                    del vals[pos]
                if not vals:
                    del it[fk]
        return True

    def rm_root(self, root: str, all_items: bool) -> bool:
        key = self._k(root)
        items = self.data.get(key)
        if not items:
            return False
        if all_items:
            del self.data[key]
        else:
            del items[0]
            if not items:
                del self.data[key]
        return True

    def child_rm(self, root: str, field: str) -> bool:
        it = self.item(root, 0)
        if it is None or self._k(field) not in it:
            return False
        del it[self._k(field)]
        return True


def newest_fields(data: Roots, root: str) -> dict[str, Scalar]:
    """The fields of the newest ``$xavp(root)``, newest field first (as Kamailio lists them),
    each with its newest value (the Via builder's xavp_via_params/fields)."""
    items = data.get(root)
    if not items:
        return {}
    return {k: v[0] for k, v in reversed(items[0].items()) if v and k != VALUE_FIELD}
