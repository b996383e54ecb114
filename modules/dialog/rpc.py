"""The dialog RPC commands (Kamailio's names and reply shapes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ksr.core.rpc import RpcError, rpc
from ksr.core.rpc_merge import FIRST, JOIN, SUM
from ksr.sip.dialog_state import DlgState

from .manager import RPC

if TYPE_CHECKING:
    from .manager import DialogManager
    from .model import Dialog


def dialog_info(mgr: DialogManager, d: Dialog, with_ctx: bool = False) -> dict[str, Any]:
    now = mgr.clock.now()
    if d.start_ts:
        duration = int((d.end_ts or now) - d.start_ts)
    else:
        duration = 0
    out: dict[str, Any] = {
        "h_entry": d.h_entry,
        "h_id": d.h_id,
        "ref": d.ref,
        "call-id": d.callid,
        "from_uri": d.from_uri,
        "to_uri": d.to_uri,
        "state": int(d.state),
        "start_ts": int(d.start_ts),
        "init_ts": int(d.init_ts),
        "end_ts": int(d.end_ts),
        "duration": duration,
        "timeout": int(d.timeout_ts)
        if d.state in (DlgState.CONFIRMED, DlgState.CONFIRMED_NA)
        else 0,
        "lifetime": d.lifetime,
        "dflags": d.dflags,
        "sflags": d.sflags,
        "iflags": d.iflags,
        "caller": d.caller.as_rpc(),
        "callee": d.callee.as_rpc(),
        "profiles": [{n: v} if v else n for n, v in d.profiles],
        "variables": [{k: v} for k, v in d.variables.items()],
    }
    if with_ctx:
        out["context"] = {
            "on": 1,
            "timeout_bye": int(d.timeout_bye),
            "timeout_route": d.timeout_route,
            "timeout_route_id": 0,
            "end_reason": d.end_reason,
        }
    return out


_BRIEF = {
    "f": ("from_uri", lambda d: d.from_uri),
    "t": ("to_uri", lambda d: d.to_uri),
    "c": ("call-id", lambda d: d.callid),
    "F": ("from_tag", lambda d: d.caller.tag),
    "T": ("to_tag", lambda d: d.callee.tag),
    "I": ("h_entry", lambda d: d.h_entry),
    "S": ("state", lambda d: int(d.state)),
    "E": ("h_id", lambda d: d.h_id),
    "s": ("start_ts", lambda d: int(d.start_ts)),
}


class DialogRpc:
    """Mixed into the dialog module; ``self.mgr`` is its DialogManager."""

    mgr: DialogManager

    @rpc("dlg.list", merge=JOIN)
    def rpc_list(self) -> list[dict[str, Any]]:
        """Every dialog with its legs, times, profiles and variables."""
        return [dialog_info(self.mgr, d) for d in self.mgr.listed()]

    @rpc("dlg.list_ctx", merge=JOIN)
    def rpc_list_ctx(self) -> list[dict[str, Any]]:
        """As dlg.list, with each dialog's context (timeout BYE, timeout route, end reason)."""
        return [dialog_info(self.mgr, d, True) for d in self.mgr.listed()]

    @rpc("dlg.dlg_list", merge=JOIN)
    def rpc_dlg_list(self, callid: str, from_tag: str = "") -> list[dict[str, Any]]:
        """The dialogs of a Call-ID (and From tag)."""
        return [
            dialog_info(self.mgr, d)
            for d in self.mgr.listed()
            if d.callid == callid and (not from_tag or d.caller.tag == from_tag)
        ]

    @rpc("dlg.briefing", merge=JOIN)
    def rpc_briefing(self, attrs: str = "ftcFT") -> list[dict[str, Any]]:
        """A short listing; attrs picks fields: f t c F T I S E s (default ftcFT)."""
        out = []
        for d in self.mgr.listed():
            out.append({_BRIEF[ch][0]: _BRIEF[ch][1](d) for ch in attrs if ch in _BRIEF})
        return out

    @rpc("dlg.end_dlg", merge=FIRST)
    def rpc_end_dlg(self, h_entry: int | str, h_id: int | str, extra_hdrs: str = "") -> str:
        """End a dialog by its ids: BYE to both sides, dialog:end (end reason rpc)."""
        try:
            d = self.mgr.table.get(int(h_entry), int(h_id))
        except (TypeError, ValueError):
            raise RpcError(400, "Bad dialog id") from None
        if d is None or d.state is DlgState.DELETED:
            raise RpcError(404, "Dialog not found")
        self.mgr.terminate(d, RPC, bye=True)
        return "OK"

    @rpc("dlg.terminate_dlg", merge=FIRST)
    def rpc_terminate_dlg(self, callid: str, from_tag: str, to_tag: str) -> str:
        """End a confirmed dialog by Call-ID and tags: BYE to both sides."""
        found = self.mgr.table.find(str(callid), str(from_tag), str(to_tag))
        if found is None or found[0].state not in (DlgState.CONFIRMED, DlgState.CONFIRMED_NA):
            raise RpcError(404, "Dialog not found")
        self.mgr.terminate(found[0], RPC, bye=True)
        return "OK"

    @rpc("dlg.profile_get_size")  # a shared table: every worker has every count
    def rpc_profile_get_size(self, profile: str, value: str | None = None) -> int:
        """Number of dialogs in a profile (with that value)."""
        if not self.mgr.profiles.known(profile):
            raise RpcError(404, f"Profile not found: {profile}")
        return self.mgr.profiles.size(profile, None if value in (None, "") else str(value))

    @rpc("dlg.profile_list", merge=JOIN)
    def rpc_profile_list(self, profile: str, value: str | None = None) -> list[dict[str, Any]]:
        """The dialogs in a profile (with that value)."""
        if not self.mgr.profiles.known(profile):
            raise RpcError(404, f"Profile not found: {profile}")
        v = None if value in (None, "") else str(value)
        return [
            dialog_info(self.mgr, d)
            for d in self.mgr.table
            if d.state is not DlgState.DELETED and self.mgr.profiles.contains(d, profile, v)
        ]

    @rpc("dlg.stats_active", merge=SUM)
    def rpc_stats_active(self, local_only: int | str = 0) -> dict[str, int]:
        """Dialogs by phase: starting (no reply), connecting (1xx), answering (2xx, no ACK),
        ongoing (confirmed), all."""
        c = self.mgr.table.count_states()
        out = {
            "starting": c[DlgState.UNCONFIRMED],
            "connecting": c[DlgState.EARLY],
            "answering": c[DlgState.CONFIRMED_NA],
            "ongoing": c[DlgState.CONFIRMED],
        }
        out["all"] = sum(out.values())
        return out
