"""KSR.kx getters in both engines, including defines from [core] defines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import sip_request

MSG = sip_request("INVITE", ruri="sip:bob@example.com", extra="User-Agent: ua/2", body="hi")


@pytest.mark.parametrize("lang", LANGS)
def test_getters(lang: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = server_with(["kemix"], defines={"WITH_RTPENGINE": 1, "DBURL": "postgres://x"})
    monkeypatch.setenv("KSR_TEST_ENV", "17")
    got = run_exprs(
        s,
        lang,
        [
            "KSR.kx.get_ruri()",
            "KSR.kx.get_ruser()",
            "KSR.kx.get_rhost()",
            "KSR.kx.get_fuser()",
            "KSR.kx.get_thost()",
            "KSR.kx.get_duri()",
            "KSR.kx.gete_duri()",
            "KSR.kx.getw_duri()",
            "KSR.kx.get_nhuri()",
            "KSR.kx.get_srcip()",
            "KSR.kx.get_srcport()",
            "KSR.kx.get_method()",
            "KSR.kx.get_status()",
            "KSR.kx.gets_status()",
            "KSR.kx.get_callid()",
            "KSR.kx.get_body()",
            "KSR.kx.get_bodylen()",
            "KSR.kx.get_ua()",
            "KSR.kx.get_au()",
            "KSR.kx.gete_au()",
            "KSR.kx.getw_au()",
            "KSR.kx.get_proto()",
            "KSR.kx.get_protoid()",
            "KSR.kx.get_msgtype()",
            "KSR.kx.get_msglen() > 200",
            "KSR.kx.get_timestamp() > 1600000000",
            "KSR.kx.ifdef('WITH_RTPENGINE')",
            "KSR.kx.ifndef('WITH_RTPENGINE')",
            "KSR.kx.ifdef('NOPE')",
            "KSR.kx.get_def('DBURL')",
            "KSR.kx.get_defn('WITH_RTPENGINE')",
            "KSR.kx.get_def('NOPE')",
            "KSR.kx.get_env('KSR_TEST_ENV')",
            "KSR.kx.get_envn('KSR_TEST_ENV')",
            "KSR.kx.get_env('KSR_NO_SUCH')",
            "KSR.kx.get_srcaddr_sock()",
            "KSR.kx.get_cturi()",
            "KSR.kx.get_conid()",
        ],
        tmp_path,
        context(s, MSG),
    )
    assert got == [
        "sip:bob@example.com",
        "bob",
        "example.com",
        "alice",
        "127.0.0.1",
        None,
        "",
        "<null>",
        "sip:bob@example.com",
        "127.0.0.1",
        5090,
        "INVITE",
        -1,
        None,
        "test-call-1",
        "hi",
        2,
        "ua/2",
        None,
        "",
        "<null>",
        "udp",
        1,
        1,
        True,
        True,
        True,
        False,
        False,
        "postgres://x",
        1,
        None,
        "17",
        17,
        None,
        "udp:127.0.0.1:5090",
        "sip:alice@127.0.0.1:5090",
        0,
    ]
