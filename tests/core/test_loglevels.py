"""Kamailio's debug scale (-3 alert .. 3 debug) in Python logging, one table for ksr run -d,
core.debug and KSR.kex.setdebug."""

from __future__ import annotations

import logging

from ksr.core.loglevels import ALERT, NOTICE, python_level


def test_debug_scale() -> None:
    got = [python_level(d) for d in range(-3, 4)]
    want = [
        ALERT,
        logging.CRITICAL,
        logging.ERROR,
        logging.WARNING,
        NOTICE,
        logging.INFO,
        logging.DEBUG,
    ]
    assert got == want


def test_minus_three_shows_alerts_only() -> None:
    # Kamailio's debug=-3 prints L_ALERT and hides L_CRIT (-2); `ksr run -d -3` used to show both
    assert python_level(-3) > logging.CRITICAL


def test_out_of_range_values_are_clamped() -> None:
    assert python_level(-9) == ALERT
    assert python_level(9) == logging.DEBUG


def test_level_names() -> None:
    assert logging.getLevelName(NOTICE) == "NOTICE"
    assert logging.getLevelName(ALERT) == "ALERT"
