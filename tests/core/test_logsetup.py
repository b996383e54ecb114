"""Where ksr logs: stderr, the journal (stderr with priority prefixes) or syslog, as
core.log_stderror / log_facility / log_name say; checked on real sockets and files."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ksr.core import logsetup
from ksr.core.config import ConfigError, load_config
from ksr.core.loglevels import NOTICE
from tests.support import REPO, free_port, wait_listening, write_script

ROUTE = 'function ksr_request_route() KSR.sl.sl_send_reply(200, "OK") end\n'


def test_syslog_datagrams_carry_facility_priority_and_ident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log"  # stands in for /dev/log
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(str(path))
    rx.settimeout(5)
    monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", str(path))
    handler, kind = logsetup.make_handler(False, "LOG_LOCAL3", "edge")
    assert kind == "syslog"
    logger = logging.getLogger("ksr.test.syslog")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        logger.log(NOTICE, "first")
        logger.error("second")
        local3 = 19
        assert (
            rx.recv(1000)
            == f"<{local3 * 8 + 5}>edge[{os.getpid()}]: NOTICE ksr.test.syslog: first\x00".encode()
        )
        assert rx.recv(1000).startswith(f"<{local3 * 8 + 3}>edge[".encode())
    finally:
        logger.removeHandler(handler)
        handler.close()
        rx.close()


def test_no_syslog_socket_falls_back_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", str(tmp_path / "missing"))
    handler, kind = logsetup.make_handler(False)
    assert kind == "stderr"
    assert "no syslog at" in capsys.readouterr().err


def test_unknown_facility_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "ksr.toml"
    cfg.write_text('[core]\nlog_stderror = false\nlog_facility = "LOG_LOCAL9"\n')
    with pytest.raises(ConfigError, match=r"ksr.toml:3: .*LOG_LOCAL9.*LOG_LOCAL0"):
        load_config(str(cfg))


def test_stderr_to_the_journal_gets_priority_prefixes(tmp_path: Path) -> None:
    """A service's stderr is the journal when $JOURNAL_STREAM names it: ksr then writes
    sd-daemon priority prefixes and no timestamps (journald adds its own)."""
    script = write_script(tmp_path, ROUTE)
    cfg = tmp_path / "ksr.toml"
    cfg.write_text('loadmodule = ["sl"]\n')
    journal = tmp_path / "journal-stand-in"
    port = free_port()
    with open(journal, "wb") as out:
        st = os.fstat(out.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "ksr", "run", "-f", str(cfg), "-s", str(script)]
            + ["-l", f"udp:127.0.0.1:{port}"],
            stderr=out,
            env=env,
            cwd=REPO,
        )
    try:
        wait_listening(port, proc, journal)
    finally:
        proc.terminate()
        proc.wait(10)
    lines = journal.read_text().splitlines()
    assert any(line.startswith("<6>INFO ksr: ksr ") and "listening on" in line for line in lines)
    assert all(line.startswith("<") for line in lines), lines


def test_plain_stderr_has_timestamps() -> None:
    handler, kind = logsetup.make_handler(True)
    assert kind == "stderr"  # pytest's stderr is no journal
    rec = logging.makeLogRecord({"msg": "m", "levelno": 30, "levelname": "WARNING", "name": "x"})
    assert handler.format(rec).endswith(" WARNING x: m")
    assert handler.format(rec)[:4].isdigit()  # the year


def test_dash_e_overrides_log_stderror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ksr.cli import setup_logging
    from ksr.core.config import CoreParams

    monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", str(tmp_path / "missing"))
    core = CoreParams(log_stderror=False)
    assert setup_logging(2, core, stderr=True) == "stderr"  # ksr run -E: no syslog attempt
