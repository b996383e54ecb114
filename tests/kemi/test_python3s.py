"""The app_python3s flavour: module-level route functions without mod_init, selected with
``loadmodule = [..., "app_python3s"]`` as Kamailio selects it; and ``ksr check`` warnings for
calls into a Kamailio module the configuration does not load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ksr.kemi.engine import ScriptError
from ksr.testing import ScriptHarness
from tests.support import REPO

FLAT = """
import KSR

SEEN = []

def init_hook():
    SEEN.append("init")

def ksr_request_route():
    if KSR.is_OPTIONS():
        KSR.sl.sl_send_reply(200, "Flat " + ",".join(SEEN))
        return -255
    KSR.sl.sl_send_reply(404, "Not Here")
    return 1
"""


def test_flat_script_routes_without_msg(tmp_path: Path) -> None:
    script = tmp_path / "flat.py"
    script.write_text(FLAT)
    h = ScriptHarness(
        script,
        modules=["sl", "app_python3s"],
        modparam={"app_python3s": {"script_init": "init_hook"}},
    )
    out = h.request("OPTIONS", "sip:127.0.0.1:5060")
    assert (out.code, out.reason) == (200, "Flat init")
    assert h.request("MESSAGE", "sip:bob@127.0.0.1").code == 404


def test_flat_script_without_app_python3s_is_refused_with_a_hint(tmp_path: Path) -> None:
    script = tmp_path / "flat.py"
    script.write_text(FLAT)
    with pytest.raises(ScriptError, match="load app_python3s"):
        ScriptHarness(script, modules=["sl"])


def test_app_python3s_needs_the_request_route(tmp_path: Path) -> None:
    script = tmp_path / "empty.py"
    script.write_text("import KSR\n")
    with pytest.raises(ScriptError, match=r"no function ksr_request_route\(\)"):
        ScriptHarness(script, modules=["sl", "app_python3s"])


def check(script: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ksr", "check", str(script), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )


def test_check_warns_about_unloaded_kamailio_modules(tmp_path: Path) -> None:
    """KSR.rtpproxy (a Kamailio module ksr does not load here) behind a guard: a warning that
    names the module, exit 0; a misspelt module stays an error."""
    cfg = tmp_path / "ksr.toml"
    cfg.write_text('loadmodule = ["sl", "tm", "app_python3s"]\n')
    script = tmp_path / "flat.py"
    script.write_text(
        "import KSR\n\ndef ksr_request_route():\n"
        "    if not hasattr(KSR, 'rtpproxy'):\n        return 1\n"
        "    KSR.rtpproxy.rtpproxy_manage('co')\n    KSR.tm.t_relay()\n    return 1\n"
    )
    r = check(script, cfg)
    assert r.returncode == 0, r.stderr
    assert f"WARNING: {script}:6: KSR.rtpproxy.rtpproxy_manage: module rtpproxy is not loaded" in (
        r.stderr
    )
    assert "1 warning(s)" in r.stdout
    script.write_text(script.read_text().replace("KSR.rtpproxy.", "KSR.rtpproxxy."))
    r = check(script, cfg)
    assert r.returncode == 1
    assert "unknown function KSR.rtpproxxy.rtpproxy_manage" in r.stderr
