"""KSR.dbg and friends follow every change of the log level, in both engines (the Lua engine
answers a level it found off in Lua until a level changes: ksr/kemi/log_levels.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import write_script

LOGGER = "ksr.script"


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


@pytest.mark.parametrize("lang", LANGS)
def test_a_level_turned_on_logs_at_once(
    lang: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = server_with(["kex"])
    ctx = context(s)
    lg = logging.getLogger("ksr")
    before = lg.level
    try:
        lg.setLevel(logging.INFO)
        caplog.set_level(logging.DEBUG)  # the handler takes all; the logger's level decides
        exprs = ['KSR.dbg("off 1")', 'KSR.dbg("off 2")', 'KSR.info("on 1")']
        run_exprs(s, lang, exprs, tmp_path, ctx)
        run_exprs(s, lang, exprs, tmp_path, ctx)
        assert logged(caplog) == ["on 1", "on 1"]
        caplog.clear()
        # changed by the script itself, in the middle of a route run
        exprs = [
            'KSR.dbg("off 3")',
            "KSR.kex.setdebug(3)",
            'KSR.dbg("on 2")',
            "KSR.kex.resetdebug()",
            'KSR.dbg("off 4")',
            'KSR.info("on 3")',
        ]
        run_exprs(s, lang, exprs, tmp_path, ctx)
        assert logged(caplog) == ["on 2", "on 3"]
        caplog.clear()
    finally:
        logging.disable(logging.NOTSET)
        logging.getLogger(LOGGER).setLevel(logging.NOTSET)
        lg.setLevel(before)


LUA = """
n = 0
function ksr_request_route() end
function t()
  n = n + 1
  KSR.dbg("dbg " .. n)
  KSR.dbg("dbg " .. n .. " again")
end
"""

PY = """
import KSR

class H:
    n = 0

    def ksr_request_route(self, msg):
        return 1

    def t(self, msg):
        self.n += 1
        KSR.dbg("dbg " + str(self.n))
        KSR.dbg("dbg " + str(self.n) + " again")
        return 1

def mod_init():
    return H()
"""


@pytest.mark.parametrize("lang", LANGS)
def test_levels_changed_between_runs_of_one_script(
    lang: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = server_with([])
    ctx = context(s)
    s.load_script(write_script(tmp_path, *((LUA, ".lua") if lang == "lua" else (PY, ".py"))))
    lg, script = logging.getLogger("ksr"), logging.getLogger(LOGGER)
    before = lg.level
    caplog.set_level(logging.DEBUG)
    try:
        lg.setLevel(logging.INFO)
        for _ in range(2):
            assert s.run_route(ctx, "t") == 1  # 1, 2: off
        script.setLevel(logging.DEBUG)
        assert s.run_route(ctx, "t") == 1  # 3
        script.setLevel(logging.NOTSET)
        assert s.run_route(ctx, "t") == 1  # 4: off again
        lg.setLevel(logging.DEBUG)
        assert s.run_route(ctx, "t") == 1  # 5
        logging.disable(logging.DEBUG)
        assert s.run_route(ctx, "t") == 1  # 6: off
        logging.disable(logging.NOTSET)
        assert s.run_route(ctx, "t") == 1  # 7
        assert logged(caplog) == [f"dbg {n}{more}" for n in (3, 5, 7) for more in ("", " again")]
    finally:
        logging.disable(logging.NOTSET)
        script.setLevel(logging.NOTSET)
        lg.setLevel(before)


@pytest.mark.parametrize("lang", LANGS)
def test_an_off_level_still_checks_the_arguments(
    lang: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = server_with([])
    ctx = context(s)
    lg = logging.getLogger("ksr")
    before = lg.level
    try:
        lg.setLevel(logging.INFO)
        caplog.set_level(logging.DEBUG)
        run_exprs(s, lang, ['KSR.dbg("off")', 'KSR.dbg("off")'], tmp_path, ctx)
        run_exprs(s, lang, ["KSR.dbg()"], tmp_path, ctx)
        assert logged(caplog) == ["KSR.dbg: too few parameters (0 of 1)"]
    finally:
        lg.setLevel(before)


def test_a_disabled_logger_is_no_level_to_keep(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``Logger.disabled`` changes without a cache clear: Lua keeps no answer it gave then."""
    s = server_with([])
    ctx = context(s)
    s.load_script(write_script(tmp_path, LUA))
    script = logging.getLogger(LOGGER)
    caplog.set_level(logging.DEBUG)
    try:
        script.disabled = True
        assert s.run_route(ctx, "t") == 1
        script.disabled = False
        assert s.run_route(ctx, "t") == 1
        assert logged(caplog) == ["dbg 2", "dbg 2 again"]
    finally:
        script.disabled = False
