"""kex: the per-process debug level (KSR.kex.setdebug / resetdebug)."""

from __future__ import annotations

import logging

from ksr.core.context import MsgContext
from ksr.core.loglevels import python_level
from ksr.core.module import Module
from ksr.kemi.registry import kemi


class Kex(Module):
    name = "kex"

    def init(self) -> None:
        self._saved: int | None = None

    @kemi()
    def setdebug(self, ctx: MsgContext, level: int) -> int:
        """Set the log level of this worker (Kamailio levels -3 alert .. 3 debug)."""
        lg = logging.getLogger("ksr")
        if self._saved is None:
            self._saved = lg.level
        lg.setLevel(python_level(level))
        return 1

    @kemi()
    def resetdebug(self, ctx: MsgContext) -> int:
        """Restore the configured log level."""
        if self._saved is not None:
            logging.getLogger("ksr").setLevel(self._saved)
            self._saved = None
        return 1


MODULE = Kex
