"""The default scripts, Lua and Python, in a real ksr process on real UDP: the everyday answers
of a proxy/registrar, identical in both languages."""

from __future__ import annotations

from pathlib import Path

from tests.support import ksr_process

from .helpers import LANGS, Peer, config_text, request, script


def _answers(tmp: Path, lang: str) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    peer = Peer()
    with ksr_process(script(lang), config_text(tmp)) as k:
        port = k["port"]
        me = f"127.0.0.1:{port}"

        def ask(name: str, text: str | bytes) -> None:
            rpl = peer.final(text, port)
            out[name] = (rpl.status, rpl.reason)

        ask("keepalive", request("OPTIONS", f"sip:{me}", peer, "ka"))
        ask("options-user", request("OPTIONS", f"sip:nobody@{me}", peer, "opt-user"))
        ask("max-forwards-0", request("OPTIONS", f"sip:{me}", peer, "mf0", max_forwards=0))
        ask(
            "max-forwards-bad",
            request("OPTIONS", f"sip:{me}", peer, "mfx").replace(
                "Max-Forwards: 70", "Max-Forwards: x1"
            ),
        )
        # Content-Length says 9, the body is empty
        ask(
            "malformed",
            request("OPTIONS", f"sip:{me}", peer, "bad").replace(
                "Content-Length: 0", "Content-Length: 9"
            ),
        )
        ask(
            "bad-cseq",
            request("INVITE", f"sip:bob@{me}", peer, "cseq").replace(
                "CSeq: 1 INVITE", "CSeq: 1 BYE"
            ),
        )
        ask("invite-unknown", request("INVITE", f"sip:nobody@{me}", peer, "inv-unknown"))
        ask("invite-no-user", request("INVITE", f"sip:{me}", peer, "inv-nouser"))
        ask("message-unknown", request("MESSAGE", f"sip:nobody@{me}", peer, "msg"))
        ask(
            "bye-no-dialog",
            request("BYE", f"sip:bob@{me}", peer, "bye").replace(
                f"To: <sip:bob@{me}>", f"To: <sip:bob@{me}>;tag=x"
            ),
        )
        ask("foreign-domain", request("OPTIONS", "sip:bob@nowhere.invalid", peer, "foreign"))
        # still answering after all of that
        ask("keepalive-again", request("OPTIONS", f"sip:{me}", peer, "ka2"))
        assert k["proc"].poll() is None
    peer.close()
    return out


EXPECTED: dict[str, int] = {
    "keepalive": 200,  # OPTIONS to the server itself (no R-URI user)
    "options-user": 404,  # routed like any request: nobody is registered
    "max-forwards-0": 483,
    "max-forwards-bad": 400,  # process_maxfwd -2, then sanity answers
    "malformed": 400,
    "bad-cseq": 400,  # CSeq method differs from the request method
    "invite-unknown": 404,
    "invite-no-user": 484,
    "message-unknown": 404,
    "bye-no-dialog": 404,  # a To-tag and no Route: not ours to route
    "foreign-domain": 478,  # relayed (sipout) to a host that does not resolve
    "keepalive-again": 200,
}


def test_default_scripts_answer_alike(tmp_path: Path) -> None:
    got = {}
    for lang in LANGS:
        (tmp_path / lang).mkdir()
        got[lang] = _answers(tmp_path / lang, lang)
    lua, py = (got[x] for x in LANGS)
    assert {k: v[0] for k, v in lua.items()} == EXPECTED
    assert lua == py  # codes and reason phrases
    assert lua["keepalive"][1] == "Keepalive"
    assert lua["invite-no-user"][1] == "Address Incomplete"
    assert lua["max-forwards-0"][1] == "Too Many Hops"
