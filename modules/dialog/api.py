"""dialog's API for other modules (acc), as Kamailio's ``load_dlg_api``.

Obtained in ``init``: ``dialog = self.optional("dialog", DialogApi)``. A ``Dialog`` is read
only by its users: its state is the dialog module's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .model import Dialog

if TYPE_CHECKING:
    from ksr.core.context import MsgContext

    from . import DialogModule

__all__ = ["CDR_WRITTEN", "Dialog", "DialogApi", "Listener"]

# fn(dialog, evname, ctx) for every dialog:start/end/failed (exactly once each)
Listener = Callable[[Dialog, str, "MsgContext"], None]

CDR_WRITTEN = 2  # Dialog.iflags bit: the call's CDR is queued (kept with the dialog)


class DialogApi:
    """What other modules use of dialog."""

    __slots__ = ("_dlg",)

    def __init__(self, module: DialogModule) -> None:
        self._dlg = module

    def add_listener(self, fn: Listener) -> None:
        """``fn(dialog, evname, ctx)`` after the script's event callback, for every
        dialog:start/end/failed (exactly once each)."""
        self._dlg.add_listener(fn)

    def current(self, ctx: MsgContext) -> Dialog | None:
        """The dialog of the message being processed, if any."""
        return self._dlg.mgr.current(ctx)

    def now(self) -> float:
        """The dialog clock (the times of a Dialog are on it)."""
        return float(self._dlg.mgr.clock.now())

    def claim_cdr(self, dlg: Dialog) -> bool:
        """True the first time only, for each dialog: the caller writes the call's one CDR."""
        if dlg.iflags & CDR_WRITTEN:
            return False
        dlg.iflags |= CDR_WRITTEN
        return True
