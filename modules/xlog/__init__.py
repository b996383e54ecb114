"""xlog: logging with pseudo-variables expanded (KSR.xlog).

The text goes to the ``ksr.script`` logger, so it lands where ``KSR.info`` and friends log.
"""

from __future__ import annotations

import logging

from ksr.core.context import MsgContext
from ksr.core.loglevels import ALERT, NOTICE
from ksr.core.module import ModParams, Module
from ksr.kemi.registry import kemi

log = logging.getLogger("ksr.script")
LEVELS = {
    "l_alert": ALERT,
    "l_bug": logging.CRITICAL,
    "l_crit": logging.CRITICAL,
    "l_err": logging.ERROR,
    "l_warn": logging.WARNING,
    "l_notice": NOTICE,
    "l_info": logging.INFO,
    "l_dbg": logging.DEBUG,
}


class XlogParams(ModParams):
    buf_size: int = 4096
    force_color: int = 0
    long_format: int = 0
    prefix: str = ""
    log_facility: str = "LOG_LOCAL0"
    log_colors: list[str] = []
    methods_filter: int = -1


class Xlog(Module):
    name = "xlog"
    Params = XlogParams

    def _log(self, ctx: MsgContext, level: int, fmt: str) -> int:
        if not log.isEnabledFor(level):
            return 1
        text = self.server.pv.expand(ctx, fmt).rstrip("\n")
        prefix = self.server.pv.expand(ctx, self.params.prefix) if self.params.prefix else ""
        log.log(level, "%s%s", prefix, text[: self.params.buf_size])
        return 1

    @kemi()
    def xdbg(self, ctx: MsgContext, fmt: str) -> int:
        """Log fmt (PVs expanded) at DEBUG."""
        return self._log(ctx, logging.DEBUG, fmt)

    @kemi()
    def xinfo(self, ctx: MsgContext, fmt: str) -> int:
        """Log at INFO."""
        return self._log(ctx, logging.INFO, fmt)

    @kemi()
    def xnotice(self, ctx: MsgContext, fmt: str) -> int:
        """Log at NOTICE."""
        return self._log(ctx, NOTICE, fmt)

    @kemi()
    def xwarn(self, ctx: MsgContext, fmt: str) -> int:
        """Log at WARNING."""
        return self._log(ctx, logging.WARNING, fmt)

    @kemi()
    def xerr(self, ctx: MsgContext, fmt: str) -> int:
        """Log at ERROR."""
        return self._log(ctx, logging.ERROR, fmt)

    @kemi()
    def xalert(self, ctx: MsgContext, fmt: str) -> int:
        """Log at ALERT."""
        return self._log(ctx, ALERT, fmt)

    @kemi()
    def xcrit(self, ctx: MsgContext, fmt: str) -> int:
        """Log at CRITICAL."""
        return self._log(ctx, logging.CRITICAL, fmt)

    @kemi()
    def xlog(self, ctx: MsgContext, level: str, fmt: str) -> int:
        """xlog("L_INFO", fmt): level L_ALERT, L_BUG, L_CRIT, L_ERR, L_WARN, L_NOTICE, L_INFO, L_DBG."""
        return self._log(ctx, LEVELS.get(level.strip().lower(), logging.ERROR), fmt)

    @kemi()
    def xlog_facility(self, ctx: MsgContext, level: str, facility: str, fmt: str) -> int:
        """xlog with a syslog facility (ksr logs through Python logging; the facility is ignored)."""
        return self.xlog(ctx, level, fmt)


MODULE = Xlog
