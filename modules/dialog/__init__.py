"""dialog: call tracking, dialog:start/end/failed events, profiles, dialog variables.

See docs/modules/dialog.md. The engine is in manager.py, the state machine in
ksr/sip/dialog_state.py, the tm wiring in tmglue.py, persistence in store.py.
"""

from __future__ import annotations

import logging

import trio

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.db import DEFAULT_DB_URL, DbError, SchemaMismatch, store_for
from ksr.kemi.registry import XVal, kemi
from ksr.modules.tm.api import TmApi
from ksr.sip.dialog_state import DlgState
from ksr.sip.message import Request
from ksr.sip.owner import call_id_owner

from .api import DialogApi
from .cluster import SharedDialogs
from .cluster_profiles import ClusterProfiles
from .manager import RPC, DialogManager, Listener
from .model import Dialog
from .pvs import register as register_pvs
from .rpc import DialogRpc
from .store import DialogStore
from .takeover import Takeover
from .tmglue import TmGlue
from .workers import MISSING, DialogWorkers

log = logging.getLogger("ksr.dialog")


class DialogParams(ModParams):
    event_callback: str = "ksr_dialog_event"  # ksr's default; a missing function is skipped
    dlg_flag: int = -1  # a message flag that, set before t_relay, starts tracking
    default_timeout: int = 43200
    early_timeout: int = 300
    noack_timeout: int = 60
    end_timeout: int = 300
    send_bye: int = 0
    timeout_noreset: int = 0
    profiles_no_value: str = ""
    profiles_with_value: str = ""
    detect_spirals: int = 1
    db_mode: int = 0
    db_url: str = ""  # empty = ksr's default store (docs/storage.md)
    db_update_period: int = 60
    table_name: str = "dialog"
    vars_table_name: str = "dialog_vars"
    hash_size: int = 4096
    rr_param: str = "did"
    dlg_match_mode: int = 1
    bye_early_code: int = 480
    bye_early_reason: str = "Temporarily Unavailable"
    enable_stats: int = 1
    enable_dmq: int = 0  # share dialogs with the other nodes of a cluster (docs/cluster.md)


class DialogModule(DialogRpc, DialogWorkers, Module):
    name = "dialog"
    Params = DialogParams
    # tm is needed to follow replies; without it the module loads, warns and stays inert
    events = ("dialog:start", "dialog:end", "dialog:failed", "dialog:timeout")

    def init(self) -> None:
        p: DialogParams = self.params
        self.mgr = DialogManager(self.server, p)
        register_pvs(self.server.pv, self.mgr)
        self.server.request_hooks.append(self.mgr.request_hook)
        self.glue = TmGlue(self.server, self.mgr)
        self.share("dialog:profiles", self.mgr.profiles)
        self.store: DialogStore | None = None
        self.shared_dlg: SharedDialogs | None = None
        if p.enable_dmq:
            self._check_cluster(p)
        if p.db_mode:
            url = p.db_url or DEFAULT_DB_URL
            try:
                self.store = DialogStore(
                    store_for(self.server, url), p.db_mode, p.table_name, p.vars_table_name
                )
                self._loaded = self.store.load()
            except SchemaMismatch as err:
                from ksr.core.config import ConfigError

                raise ConfigError(f"[modparam.dialog] {err}", self.server.config.source) from None
            except DbError as err:
                log.error("cannot load stored dialogs from %s: %s", url, err)
                self._loaded = []
            if p.enable_dmq and self.store is not None:
                self.shared_dlg = SharedDialogs(self.server, self.mgr, self.store)
                self.share("dialog:moves", self.shared_dlg.moves)
                self.server.cluster.share("dialog:moves", self.shared_dlg.moves)

    def _check_cluster(self, p: DialogParams) -> None:
        from ksr.core.config import ConfigError

        why = ""
        if p.db_mode != 1:
            why = "needs db_mode = 1 (the nodes share dialogs through their stored rows)"
        elif not self.server.config.cluster.redis_url:
            why = "needs [cluster] redis_url (the nodes tell each other which one holds a dialog)"
        if why:
            raise ConfigError(f"[modparam.dialog] enable_dmq = 1 {why}", self.server.config.source)

    async def start(self, nursery: trio.Nursery) -> None:
        self.glue.attach(self.optional("tm", TmApi))
        handoff = self.server.handoff
        if handoff is not None:
            self.mgr.table.share_ids(handoff.index, handoff.count)
            # this worker's dialogs count under its index; those of its previous life are gone
            self.mgr.profiles.owner = handoff.index
            self.mgr.profiles.forget(handoff.index)
        if self.store is not None:
            # a table shared by several nodes holds their dialogs too: restore only ours
            self._loaded = [d for d in self._loaded if self.mgr.table.mine(d)]
            if handoff is not None:  # worker processes: restore only the calls this one owns
                self._loaded = [
                    d
                    for d in self._loaded
                    if call_id_owner(d.callid, handoff.count) == handoff.index
                ]
            n = self.mgr.restore(self._loaded)
            if n:
                log.info("dialog: %d dialogs restored from storage", n)
            self.mgr.store = self.store
            self.mgr.cluster = self.shared_dlg
            period = self.params.db_update_period if self.params.db_mode == 2 else 5
            self.server.timers.every(max(1, period), self.store.flush)
        if self.shared_dlg is not None:
            nursery.start_soon(ClusterProfiles(self.server, self.mgr.profiles).run)
            self.takeover = Takeover(self.server, self.shared_dlg)
            self.takeover.attach()

    def stop(self) -> None:
        if self.store is not None:
            for d in self.mgr.table:
                self.store.dirty.setdefault(f"{d.h_entry}:{d.h_id}", d)
            waiting = self.store.flush()
            if waiting:
                log.error("dialog: %d dialogs could not be stored at shutdown", waiting)

    def _cur(self, ctx: MsgContext) -> Dialog | None:
        return self.mgr.current(ctx)

    # -- KSR.dialog ------------------------------------------------------------------------
    @kemi(via=lambda dialog: dialog.mgr.manage)
    def dlg_manage(self, ctx: MsgContext) -> int:
        """Track the call of this initial INVITE (call before t_relay), or bind an in-dialog
        request to its dialog. 1 on success, -1 otherwise."""
        return self.mgr.manage(ctx)  # compiled (manager.py)

    @kemi()
    def is_known_dlg(self, ctx: MsgContext) -> int:
        """1 if the message belongs to a tracked dialog."""
        d = self._cur(ctx)
        return 1 if d is not None else -1

    @kemi()
    def dlg_set_timeout(self, ctx: MsgContext, seconds: int) -> int:
        """Lifetime of the current dialog in seconds (from answer, or from now once answered)."""
        d = self._cur(ctx)
        if d is None:
            ctx.extra.setdefault("dlg_ctx", {})["timeout"] = seconds
            return -1
        self.mgr.set_timeout(d, seconds)
        return 1

    @kemi(suspends=True)
    def dlg_set_timeout_id(self, ctx: MsgContext, seconds: int, h_entry: int, h_id: int) -> int:
        """dlg_set_timeout for the dialog with these ids (held by any worker)."""
        d = self.mgr.table.get(h_entry, h_id)
        if d is None:
            return 1 if self.remote_set_timeout(h_entry, h_id, seconds) else -1
        self.mgr.set_timeout(d, seconds)
        return 1

    @kemi()
    def dlg_set_property(self, ctx: MsgContext, name: str) -> int:
        """timeout-noreset (ka-src/ka-dst accepted, keepalives are not sent)."""
        d = self._cur(ctx)
        if d is None:
            return -1
        if name == "timeout-noreset":
            d.timeout_noreset = True
        elif name not in ("ka-src", "ka-dst"):
            return -1
        return 1

    @kemi()
    def dlg_reset_property(self, ctx: MsgContext, name: str) -> int:
        """Clear a property set by dlg_set_property."""
        d = self._cur(ctx)
        if d is None:
            return -1
        if name == "timeout-noreset":
            d.timeout_noreset = False
        return 1

    @kemi()
    def dlg_bye(self, ctx: MsgContext, side: str) -> int:
        """End the current dialog: BYE to caller, callee or all (dialog:end, reason rpc)."""
        d = self._cur(ctx)
        if d is None or d.state is DlgState.DELETED or side not in ("caller", "callee", "all"):
            return -1
        if d.state in (DlgState.CONFIRMED, DlgState.CONFIRMED_NA):
            if side in ("callee", "all"):
                self.mgr.send_bye(d, True)
            if side in ("caller", "all"):
                self.mgr.send_bye(d, False)
        self.mgr.terminate(d, RPC, bye=False, ctx=None)
        return 1

    @kemi()
    def dlg_get(self, ctx: MsgContext, callid: str, ftag: str, ttag: str) -> int:
        """Make the dialog with these identifiers the current one."""
        found = self.mgr.table.find(callid, ftag, ttag or None)
        if found is None:
            return -1
        ctx.extra["dlg"] = found[0]
        return 1

    @kemi(suspends=True)
    def dlg_get_var(self, ctx: MsgContext, callid: str, ftag: str, ttag: str, key: str) -> XVal:
        """A variable of another dialog (held by any worker), or null."""
        found = self.mgr.table.find(callid, ftag, ttag or None)
        if found:
            return found[0].variables.get(key)
        value = self.remote_get_var(callid, ftag, ttag, key)
        return None if value is MISSING else value

    @kemi(suspends=True)
    def dlg_set_var(
        self, ctx: MsgContext, callid: str, ftag: str, ttag: str, key: str, value: str
    ) -> int:
        """Set a variable of another dialog (held by any worker)."""
        found = self.mgr.table.find(callid, ftag, ttag or None)
        if found is None:
            return 1 if self.remote_set_var(callid, ftag, ttag, key, value) else -1
        found[0].variables[key] = value
        self.mgr.persist(found[0])
        return 1

    # flags
    @kemi()
    def dlg_setflag(self, ctx: MsgContext, idx: int) -> int:
        """Set dialog flag idx (0..31)."""
        return self._flag(ctx, idx, 1)

    @kemi()
    def dlg_resetflag(self, ctx: MsgContext, idx: int) -> int:
        """Reset dialog flag idx."""
        return self._flag(ctx, idx, 0)

    @kemi()
    def dlg_isflagset(self, ctx: MsgContext, idx: int) -> int:
        """1 if dialog flag idx is set, -1 if not (or no dialog)."""
        return self._flag(ctx, idx, -1)

    def _flag(self, ctx: MsgContext, idx: int, op: int) -> int:
        if not 0 <= idx <= 31:
            return -1
        d = self._cur(ctx)
        if d is None:
            dctx = ctx.extra.setdefault("dlg_ctx", {})
            flags = int(dctx.get("flags", 0))
            if op == -1:
                return 1 if flags & (1 << idx) else -1
            dctx["flags"] = flags | (1 << idx) if op else flags & ~(1 << idx)
            return 1
        if op == -1:
            return 1 if d.sflags & (1 << idx) else -1
        d.sflags = d.sflags | (1 << idx) if op else d.sflags & ~(1 << idx)
        self.mgr.persist(d)
        return 1

    # profiles
    def _profile(self, ctx: MsgContext, name: str, value: str | None, op: str) -> int:
        prof = self.mgr.profiles
        if not prof.known(name):
            log.critical("dialog: profile <%s> not defined", name)
            return -1
        d = self._cur(ctx)
        if op == "set":
            v = value or ""
            if d is None:
                if not ctx.is_request or ctx.request.method != "INVITE":
                    return -1
                ctx.extra.setdefault("dlg_profiles_pending", []).append((name, v))
                return 1
            if d.state is DlgState.DELETED:
                return -1
            prof.add(d, name, v)
            self.mgr.persist(d)
            return 1
        if d is None:
            return -1
        if op == "unset":
            ok = prof.remove(d, name, value)
            self.mgr.persist(d)
            return 1 if ok else -1
        return 1 if d.state is not DlgState.DELETED and prof.contains(d, name, value) else -1

    @kemi()
    def set_dlg_profile_static(self, ctx: MsgContext, profile: str) -> int:
        """Add the current dialog to a profile without value."""
        return self._profile(ctx, profile, None, "set")

    @kemi()
    def set_dlg_profile(self, ctx: MsgContext, profile: str, value: str) -> int:
        """Add the current dialog to a profile with a value."""
        return self._profile(ctx, profile, value, "set")

    @kemi()
    def unset_dlg_profile_static(self, ctx: MsgContext, profile: str) -> int:
        """Remove the current dialog from a profile."""
        return self._profile(ctx, profile, None, "unset")

    @kemi()
    def unset_dlg_profile(self, ctx: MsgContext, profile: str, value: str) -> int:
        """Remove the current dialog from a profile with that value."""
        return self._profile(ctx, profile, value, "unset")

    @kemi()
    def is_in_profile_static(self, ctx: MsgContext, profile: str) -> int:
        """1 if the current dialog is in the profile."""
        return self._profile(ctx, profile, None, "is")

    @kemi()
    def is_in_profile(self, ctx: MsgContext, profile: str, value: str) -> int:
        """1 if the current dialog is in the profile with that value."""
        return self._profile(ctx, profile, value, "is")

    @kemi()
    def get_profile_size_static(self, ctx: MsgContext, profile: str, spv: str) -> int:
        """Write the size of a profile into a $var(...) or $avp(...)."""
        return self._size(ctx, profile, None, spv)

    @kemi()
    def get_profile_size(self, ctx: MsgContext, profile: str, value: str, spv: str) -> int:
        """Write the size of a profile for a value into a $var(...) or $avp(...)."""
        return self._size(ctx, profile, value, spv)

    def _size(self, ctx: MsgContext, profile: str, value: str | None, spv: str) -> int:
        if not self.mgr.profiles.known(profile):
            log.critical("dialog: profile <%s> not defined", profile)
            return -1
        if not (spv.startswith("$var(") or spv.startswith("$avp(")):
            log.error("dialog: get_profile_size needs a $var or $avp, not %s", spv)
            return -1
        n = self.mgr.profiles.size(profile, value if value else None)
        return 1 if self.server.pv.set(ctx, spv, n) else -1

    # variables
    @kemi()
    def var_sets(self, ctx: MsgContext, key: str, value: str) -> int:
        """Set $dlg_var(key) of the current dialog (kept for the dialog once created)."""
        return 1 if self.server.pv.set(ctx, f"$dlg_var({key})", value) else -1

    @kemi()
    def var_get(self, ctx: MsgContext, key: str) -> XVal:
        """$dlg_var(key) or null."""
        return self.server.pv.get(ctx, f"$dlg_var({key})")

    @kemi()
    def var_gete(self, ctx: MsgContext, key: str) -> XVal:
        """$dlg_var(key) or empty string."""
        v = self.server.pv.get(ctx, f"$dlg_var({key})")
        return "" if v is None else v

    @kemi()
    def var_getw(self, ctx: MsgContext, key: str) -> XVal:
        """$dlg_var(key) or "<null>"."""
        v = self.server.pv.get(ctx, f"$dlg_var({key})")
        return "<null>" if v is None else v

    @kemi()
    def var_rm(self, ctx: MsgContext, key: str) -> int:
        """Delete $dlg_var(key)."""
        return 1 if self.server.pv.set(ctx, f"$dlg_var({key})", None) else -1

    @kemi()
    def var_is_null(self, ctx: MsgContext, key: str) -> int:
        """1 if $dlg_var(key) is not set."""
        return 1 if self.server.pv.get(ctx, f"$dlg_var({key})") is None else -1

    # -- API for other modules (acc): api.py ------------------------------------------------
    def api(self) -> DialogApi:
        return DialogApi(self)

    def add_listener(self, fn: Listener) -> None:
        """``fn(dialog, evname, ctx)`` after the script's event callback, for every
        dialog:start/end/failed (exactly once each)."""
        self.mgr.listeners.append(fn)

    def is_initial_invite(self, ctx: MsgContext) -> bool:
        m = ctx.msg
        return isinstance(m, Request) and m.method == "INVITE" and not m.to_tag


MODULE = DialogModule
