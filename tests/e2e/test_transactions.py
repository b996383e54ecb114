"""Retransmissions and CANCEL through the default scripts, with plain UDP peers so each
message is seen: a retransmitted INVITE is absorbed (its transaction answers, the callee sees
it once), a CANCEL without its INVITE gets nothing, a CANCEL with one reaches the callee."""

from __future__ import annotations

from pathlib import Path

from ksr.sip.builders import make_reply
from ksr.sip.message import Request, Response
from tests.support import ksr_process

from .helpers import LANGS, Peer, config_text, request, script


def _recv_request(peer: Peer) -> Request:
    msg = peer.recv()
    assert isinstance(msg, Request), msg
    return msg


def _recv_reply(peer: Peer) -> Response:
    msg = peer.recv()
    assert isinstance(msg, Response), msg
    return msg


def _answer(callee: Peer, req: Request, code: int, port: int) -> None:
    callee.send(make_reply(req, code, to_tag="callee-tag").to_bytes(), port)


def _events(tmp: Path, lang: str) -> list[str]:
    seen: list[str] = []
    caller, callee = Peer(), Peer()
    with ksr_process(script(lang), config_text(tmp)) as k:
        port = k["port"]
        me = f"127.0.0.1:{port}"
        reg = request("REGISTER", f"sip:{me}", callee, "reg-dave", from_uri=f"sip:dave@{me}")
        seen.append(
            f"register {callee.final(reg.replace(f'To: <sip:{me}>', f'To: <sip:dave@{me}>'), port).status}"
        )

        # an INVITE, then its retransmission: the callee gets it once
        inv = request("INVITE", f"sip:dave@{me}", caller, "inv-1")
        caller.send(inv, port)
        seen.append(f"caller {_recv_reply(caller).status}")
        fwd = _recv_request(callee)
        seen.append(f"callee {fwd.method}")
        caller.send(inv, port)
        seen.append(f"caller {_recv_reply(caller).status} (retransmission)")
        _answer(callee, fwd, 486, port)
        # the next thing the callee sees is ksr's ACK: the retransmission was not relayed
        seen.append(f"callee {_recv_request(callee).method}")
        seen.append(f"caller {_recv_reply(caller).status}")

        # a CANCEL for no INVITE: no answer (the keepalive after it is answered first)
        cancel = request("CANCEL", f"sip:dave@{me}", caller, "no-such-invite")
        caller.send(cancel, port)
        caller.send(request("OPTIONS", f"sip:{me}", caller, "ka"), port)
        rpl = _recv_reply(caller)
        seen.append(f"after stray CANCEL: {rpl.status} {rpl.get('call-id')}")

        # a CANCEL for a ringing INVITE: 200 to the CANCEL, CANCEL to the callee, 487 back
        inv2 = request("INVITE", f"sip:dave@{me}", caller, "inv-2")
        caller.send(inv2, port)
        _recv_reply(caller)  # 100
        fwd2 = _recv_request(callee)
        _answer(callee, fwd2, 180, port)
        seen.append(f"caller {_recv_reply(caller).status}")
        caller.send(
            inv2.replace("INVITE sip", "CANCEL sip").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL"),
            port,
        )
        seen.append(f"caller {_recv_reply(caller).status} to CANCEL")
        c = _recv_request(callee)
        seen.append(f"callee {c.method}")
        callee.send(make_reply(c, 200).to_bytes(), port)
        _answer(callee, fwd2, 487, port)
        seen.append(f"callee {_recv_request(callee).method}")
        seen.append(f"caller {_recv_reply(caller).status}")
        assert k["proc"].poll() is None
    caller.close()
    callee.close()
    return seen


EXPECTED = [
    "register 200",
    "caller 100",
    "callee INVITE",
    "caller 100 (retransmission)",
    "callee ACK",
    "caller 486",
    "after stray CANCEL: 200 ka",
    "caller 180",
    "caller 200 to CANCEL",
    "callee CANCEL",
    "callee ACK",
    "caller 487",
]


def test_retransmission_and_cancel(tmp_path: Path) -> None:
    for lang in LANGS:
        (tmp_path / lang).mkdir()
        assert _events(tmp_path / lang, lang) == EXPECTED, lang
