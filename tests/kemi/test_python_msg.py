"""The ``msg`` of Python routes (app_python3's message object), read during its run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kemi.scriptkit import context, server_with
from tests.support import write_script

SCRIPT = """
import KSR

SEEN = []
KEPT = []

class H:
    def ksr_request_route(self, msg):
        return 1

    def t(self, msg):
        SEEN.extend([msg.Type, msg.Method, msg.RURI, msg.src_address, msg.getHeader("CSeq"),
                     msg.Status])
        msg.rewrite_ruri("sip:carol@example.org")
        msg.set_dst_uri("sip:192.0.2.1:5070")
        SEEN.append(KSR.pv.get("$ru"))
        SEEN.append(KSR.pv.get("$du"))
        KEPT.append(msg)
        return 1

def mod_init():
    return H()
"""


def test_msg_stands_for_the_running_message(tmp_path: Path) -> None:
    s = server_with(["pv"])
    ctx = context(s)
    engine = s.load_script(write_script(tmp_path, SCRIPT, ".py"))
    assert s.run_route(ctx, "t") == 1
    seen = engine.module.SEEN  # type: ignore[attr-defined]
    assert seen[:5] == [
        "SIP_REQUEST",
        "INVITE",
        ctx.msg.uri,  # type: ignore[union-attr]
        ("127.0.0.1", 5090),
        "1 INVITE",
    ]
    assert seen[5] == ""  # a request has no status
    assert seen[6:] == ["sip:carol@example.org", "sip:192.0.2.1:5070"]
    kept = engine.module.KEPT[0]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        kept.Method  # noqa: B018 - valid during its run only
