"""KSR.xlog: PV expansion and levels, in both engines."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import sip_request


@pytest.mark.parametrize("lang", LANGS)
def test_xlog_expands_pvs(lang: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = server_with(["xlog"], {"xlog": {"prefix": "[$ci] "}})
    caplog.set_level(logging.DEBUG, logger="ksr.script")
    got = run_exprs(
        s,
        lang,
        [
            "KSR.xlog.xinfo('method=$rm user=$(ru{uri.user}) from $si:$sp\\n')",
            "KSR.xlog.xerr('missing=$hdr(X-None)')",
            "KSR.xlog.xlog('L_WARN', 'warned $rm')",
            "KSR.xlog.xdbg('dbg')",
            "KSR.xlog.xnotice('n')",
            "KSR.xlog.xalert('a')",
            "KSR.xlog.xcrit('c')",
            "KSR.xlog.xwarn('w')",
            "KSR.xlog.xlog_facility('L_INFO', 'LOG_LOCAL1', 'fac')",
        ],
        tmp_path,
        context(s, sip_request("INVITE", ruri="sip:bob@example.com")),
    )
    assert got == [1] * 9
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "ksr.script"]
    assert (logging.INFO, "[test-call-1] method=INVITE user=bob from 127.0.0.1:5090") in records
    assert (logging.ERROR, "[test-call-1] missing=<null>") in records
    assert (logging.WARNING, "[test-call-1] warned INVITE") in records
    assert (logging.DEBUG, "[test-call-1] dbg") in records
    assert (logging.CRITICAL + 5, "[test-call-1] a") in records
