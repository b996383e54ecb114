"""Building call detail records from dialogs; the ``name=$pv;...`` extras of acc records."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ksr.db import Kind
from ksr.sip.uri import parse_uri

if TYPE_CHECKING:
    from ksr.core.context import MsgContext
    from ksr.modules.dialog.api import Dialog

CDR_FIELDS: tuple[tuple[str, Kind], ...] = (
    ("cdr_id", "str"),
    ("call_id", "str"),
    ("from_tag", "str"),
    ("to_tag", "str"),
    ("from_uri", "str"),
    ("to_uri", "str"),
    ("caller", "str"),
    ("callee", "str"),
    ("src_ip", "str"),
    ("start_time", "str"),
    ("answer_time", "str"),
    ("end_time", "str"),
    ("duration", "float"),
    ("status", "int"),
    ("end_reason", "str"),
)


def iso(ts: float) -> str | None:
    """ISO 8601 UTC with milliseconds, or None for "never" (0)."""
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_extra(text: str) -> list[tuple[str, str]]:
    """Kamailio's ``name=$pv;name2=$dlg_var(x)`` into [(name, spec)]."""
    out: list[tuple[str, str]] = []
    for part in text.split(";"):
        name, eq, spec = part.partition("=")
        if eq and name.strip() and spec.strip():
            out.append((name.strip(), spec.strip()))
    return out


def _user_or_uri(uri: str) -> str:
    try:
        u = parse_uri(uri)
    except Exception:
        return uri
    return u.user or uri


def build_cdr(dlg: Dialog, extras: dict[str, Any]) -> dict[str, Any]:
    answered = bool(dlg.start_ts)
    duration = round(max(0.0, dlg.end_ts - dlg.start_ts), 3) if answered and dlg.end_ts else 0.0
    ident = f"{dlg.callid}\n{dlg.caller.tag}\n{dlg.init_ts:.6f}\n{dlg.h_entry}:{dlg.h_id}"
    rec: dict[str, Any] = {
        "cdr_id": hashlib.sha1(ident.encode("utf-8", "surrogateescape")).hexdigest()[:24],
        "call_id": dlg.callid,
        "from_tag": dlg.caller.tag,
        "to_tag": dlg.callee.tag,
        "from_uri": dlg.from_uri,
        "to_uri": dlg.to_uri,
        "caller": _user_or_uri(dlg.from_uri),
        "callee": _user_or_uri(dlg.req_uri),
        "src_ip": dlg.src_ip,
        "start_time": iso(dlg.init_ts),
        "answer_time": iso(dlg.start_ts),
        "end_time": iso(dlg.end_ts),
        "duration": duration,
        "status": dlg.status,
        "end_reason": dlg.end_reason,
    }
    for k, v in extras.items():
        rec.setdefault(k, v)
    return rec


def eval_extras(ctx: MsgContext, extra: list[tuple[str, str]]) -> dict[str, Any]:
    pv = ctx.server.pv
    return {name: pv.get(ctx, spec) for name, spec in extra}
