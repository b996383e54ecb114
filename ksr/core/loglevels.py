"""Kamailio's log levels in Python logging: NOTICE and ALERT, and the -3..3 debug scale of
``core.debug``, ``ksr run -d`` and ``KSR.kex.setdebug``."""

from __future__ import annotations

import logging

NOTICE = logging.INFO + 5
ALERT = logging.CRITICAL + 5
logging.addLevelName(NOTICE, "NOTICE")
logging.addLevelName(ALERT, "ALERT")

DEBUG_LEVELS = {
    -3: ALERT,
    -2: logging.CRITICAL,  # Kamailio's L_BUG and L_CRIT
    -1: logging.ERROR,
    0: logging.WARNING,
    1: NOTICE,
    2: logging.INFO,
    3: logging.DEBUG,
}


def python_level(debug: int) -> int:
    """The logging level of a Kamailio debug value (clamped to -3..3)."""
    return DEBUG_LEVELS[max(-3, min(3, debug))]
