"""Dialogs as rows of Kamailio's ``dialog`` and ``dialog_vars`` tables (stores of
layout=kamailio; docs/storage.md).

One ``dialog`` row per dialog, matched by (hash_entry, hash_id), with Kamailio's columns: tags,
URIs, CSeqs, contacts, route sets, sockets, state, start_time and timeout (unix seconds),
sflags, iflags, toroute_name, req_uri and the profiles as JSON in ``xdata``. The dialog's
variables are ``dialog_vars`` rows. What ksr keeps beyond Kamailio's columns (source address,
INVITE time, status, end reason, ...) is one more variable, ``ksr.state`` (JSON), which
ksr strips on load.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from ksr.db import KamTable, Row, Store
from ksr.db.kamailio import DIALOG, DIALOG_VARS

from .model import Dialog

log = logging.getLogger("ksr.dialog")

KEY = ("hash_entry", "hash_id")
KSR_VAR = "ksr.state"
DIALOG_SPEC = DIALOG.spec(key="hash_id", conflict=KEY)
VARS_SPEC = DIALOG_VARS.spec(key="hash_id")
# Dialog fields kept in the ksr.state variable (the rest map to Kamailio's columns)
_EXTRA = (
    "src_ip",
    "src_port",
    "init_ts",
    "start_ts",  # also in start_time and timeout (whole seconds); these keep the fraction
    "timeout_ts",
    "end_ts",
    "lifetime",
    "timeout_bye",
    "timeout_noreset",
    "status",
    "end_reason",
    "dflags",
    "cancelled",
    "timeout_route",
    "ref",
    "owner",
)


def as_int32(n: int) -> int:
    """An unsigned 32-bit id as the signed INTEGER column holds it (Kamailio's C code stores its
    unsigned ids the same way): ids with the top bit set (server_id >= 128) read negative."""
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n


def _key(dlg: Dialog) -> Row:
    return {"hash_entry": dlg.h_entry, "hash_id": as_int32(dlg.h_id)}


def dialog_row(dlg: Dialog) -> Row:
    c, e = dlg.caller, dlg.callee
    return {
        **_key(dlg),
        "callid": dlg.callid,
        "from_uri": dlg.from_uri,
        "from_tag": c.tag,
        "to_uri": dlg.to_uri,
        "to_tag": e.tag,
        "caller_cseq": c.cseq,
        "callee_cseq": e.cseq,
        "caller_route_set": c.route_set or None,
        "callee_route_set": e.route_set or None,
        "caller_contact": c.contact,
        "callee_contact": e.contact,
        "caller_sock": c.socket,
        "callee_sock": e.socket,
        "state": int(dlg.state),
        "start_time": int(dlg.start_ts),
        "timeout": int(dlg.timeout_ts),
        "sflags": dlg.sflags,
        "iflags": dlg.iflags,
        "toroute_name": dlg.timeout_route or None,
        "req_uri": dlg.req_uri,
        "xdata": _profiles_json(dlg) if dlg.profiles else None,
    }


def _profiles_json(dlg: Dialog) -> str:
    return json.dumps(
        {"profiles": [{"name": n, "value": v} for n, v in dlg.profiles]}, separators=(",", ":")
    )


def dialog_vars(dlg: Dialog) -> dict[str, str]:
    """The variables to store: the dialog's own and ksr's extra state."""
    extra: dict[str, Any] = {f: getattr(dlg, f) for f in _EXTRA}
    extra["caller_addr"], extra["callee_addr"] = dlg.caller.addr, dlg.callee.addr
    return {**dlg.variables, KSR_VAR: json.dumps(extra, separators=(",", ":"))}


def dialog_from_rows(row: Row, variables: dict[str, str]) -> Dialog:
    """A dialog from its row and variables (written by ksr or by Kamailio)."""
    variables = dict(variables)
    extra: dict[str, Any] = {}
    if KSR_VAR in variables:
        try:
            extra = json.loads(variables.pop(KSR_VAR))
        except ValueError:
            log.error("dialog %s: unreadable %s variable", row.get("callid"), KSR_VAR)
    profiles: list[list[str]] = []
    if row.get("xdata"):
        try:
            doc = json.loads(str(row["xdata"]))
            profiles = [[str(p["name"]), str(p.get("value", ""))] for p in doc.get("profiles", [])]
        except (ValueError, TypeError, KeyError, AttributeError):
            log.error("dialog %s: unreadable xdata", row.get("callid"))

    def leg(side: str, tag: str) -> dict[str, Any]:
        return {
            "tag": str(row.get(tag) or ""),
            "contact": str(row.get(f"{side}_contact") or ""),
            "cseq": str(row.get(f"{side}_cseq") or "0"),
            "route_set": str(row.get(f"{side}_route_set") or ""),
            "socket": str(row.get(f"{side}_sock") or ""),
            "addr": str(extra.pop(f"{side}_addr", "") or ""),
        }

    start = float(row.get("start_time") or 0)
    d: dict[str, Any] = {
        "h_entry": int(row["hash_entry"] or 0),
        "h_id": int(row["hash_id"] or 0) & 0xFFFFFFFF,
        "callid": str(row.get("callid") or ""),
        "from_uri": str(row.get("from_uri") or ""),
        "to_uri": str(row.get("to_uri") or ""),
        "req_uri": str(row.get("req_uri") or ""),
        "src_ip": "",
        "src_port": 0,
        "init_ts": start,
        "state": int(row.get("state") or 1),
        "start_ts": start,
        "timeout_ts": float(row.get("timeout") or 0),
        "sflags": int(row.get("sflags") or 0),
        "iflags": int(row.get("iflags") or 0),
        "timeout_route": str(row.get("toroute_name") or ""),
        "caller": leg("caller", "from_tag"),
        "callee": leg("callee", "to_tag"),
        "variables": variables,
        "profiles": profiles,
    }
    d.update({k: v for k, v in extra.items() if k in _EXTRA})
    return Dialog.from_dict(d)


class KamDialogRows:
    """Reads and writes dialogs in Kamailio's two tables."""

    def __init__(self, store: Store, table: str, vars_table: str) -> None:
        self.dialogs = cast(KamTable, store.table(DIALOG_SPEC.renamed(table)))
        self.vars = cast(KamTable, store.table(VARS_SPEC.renamed(vars_table)))
        self._written_vars: dict[tuple[int, int], dict[str, str]] = {}

    def write(self, dlg: Dialog) -> None:
        self.dialogs.put(dialog_row(dlg))
        want = dialog_vars(dlg)
        if self._written_vars.get(dlg.key) == want:
            return
        where = _key(dlg)
        self.vars.delete_match(where)
        for k, v in want.items():
            self.vars.insert({**where, "dialog_key": k, "dialog_value": v})
        self._written_vars[dlg.key] = want

    def remove(self, dlg: Dialog) -> None:
        where = _key(dlg)
        self.dialogs.delete_match(where)
        self.vars.delete_match(where)
        self._written_vars.pop(dlg.key, None)

    def fetch(self, callid: str) -> list[Dialog]:
        """The stored dialogs of one Call-ID (another node's, for a request that reached us)."""
        out: list[Dialog] = []
        for row in self.dialogs.select({"callid": callid}):
            where = {"hash_entry": row["hash_entry"], "hash_id": row["hash_id"]}
            variables = {
                str(r["dialog_key"]): str(r["dialog_value"] or "") for r in self.vars.select(where)
            }
            try:
                dlg = dialog_from_rows(row, variables)
            except (ValueError, TypeError, KeyError) as err:
                log.error("skipping unreadable stored dialog of %s: %s", callid, err)
                continue
            self._written_vars[dlg.key] = dialog_vars(dlg)
            out.append(dlg)
        return out

    def claim(self, dlg: Dialog) -> bool:
        """Remove the dialog's rows; True if this call removed its row (so of several nodes
        ending it at once, one only is told so)."""
        where = _key(dlg)
        n = self.dialogs.delete_match(where)
        self.vars.delete_match(where)
        self._written_vars.pop(dlg.key, None)
        return n > 0

    def load(self) -> list[Dialog]:
        by_key: dict[tuple[int, int], dict[str, str]] = {}
        for r in self.vars.all():
            key = (int(r["hash_entry"] or 0), int(r["hash_id"] or 0) & 0xFFFFFFFF)
            by_key.setdefault(key, {})[str(r["dialog_key"])] = str(r["dialog_value"] or "")
        out: list[Dialog] = []
        for row in self.dialogs.all():
            key = (int(row["hash_entry"] or 0), int(row["hash_id"] or 0) & 0xFFFFFFFF)
            try:
                dlg = dialog_from_rows(row, by_key.get(key, {}))
            except (ValueError, TypeError, KeyError) as err:
                log.error("skipping unreadable stored dialog %s: %s", key, err)
                continue
            self._written_vars[key] = dialog_vars(dlg)
            out.append(dlg)
        return out
