"""KSR.kex.setdebug/resetdebug change the worker's log level, in both engines."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.kemi.scriptkit import LANGS, run_exprs, server_with


@pytest.mark.parametrize("lang", LANGS)
def test_setdebug_resetdebug(lang: str, tmp_path: Path) -> None:
    lg = logging.getLogger("ksr")
    before = lg.level
    try:
        lg.setLevel(logging.WARNING)
        s = server_with(["kex"])
        got = run_exprs(s, lang, ["KSR.kex.setdebug(3)", "KSR.get_debug()"], tmp_path)
        assert got[0] == 1
        assert lg.level == logging.DEBUG
        assert run_exprs(s, lang, ["KSR.kex.resetdebug()"], tmp_path) == [1]
        assert lg.level == logging.WARNING
    finally:
        lg.setLevel(before)
