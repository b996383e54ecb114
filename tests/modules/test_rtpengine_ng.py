"""rtpengine's ng protocol without sockets: bencode, Kamailio's flags, tags, relay choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.modules.rtpengine import ng
from ksr.modules.rtpengine.bencode import BencodeError, decode_untrusted, encode
from ksr.modules.rtpengine.relays import RelayConfigError, Relays, parse_sets
from tests.support import make_config, running_server, write_script

SDP = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def facts(**kw: object) -> ng.MessageFacts:
    base: dict[str, object] = {
        "call_id": "c1",
        "from_tag": "ft",
        "to_tag": None,
        "is_request": True,
        "src_ip": "192.0.2.7",
        "sdp": SDP,
        "vias": ["z9hG4bK-top", "z9hG4bK-second"],
    }
    base.update(kw)
    return ng.MessageFacts(**base)  # type: ignore[arg-type]


# -- bencode ---------------------------------------------------------------------------------
def test_bencode_round_trip_with_sorted_keys() -> None:
    data = encode({"command": "ping", "a": [1, b"x", {"k": "v"}]})
    assert data == b"d1:ali1e1:xd1:k1:vee7:command4:pinge"
    assert decode_untrusted(data) == {b"a": [1, b"x", {b"k": b"v"}], b"command": b"ping"}


@pytest.mark.parametrize(
    "bad",
    [b"", b"i12", b"5:abc", b"d3:abce", b"di1ei2ee", b"x", b"l" * 40 + b"e" * 40, b"4:pingX"],
)
def test_bencode_refuses_malformed_input(bad: bytes) -> None:
    with pytest.raises(BencodeError):
        decode_untrusted(bad)


# -- flags and the command dictionary ----------------------------------------------------------
def test_offer_flags_as_kamailio_reads_them() -> None:
    cmd = ng.build_command(
        ng.OFFER,
        "replace-origin replace-session-connection ICE=remove RTP/AVP trust-address "
        "direction=internal direction=external codec-strip-PCMA transcode-G722 TOS=184",
        facts(),
    )
    d = cmd.body
    assert d["command"] == "offer"
    assert d["replace"] == ["origin", "session-connection"]
    assert d["ICE"] == "remove"
    assert d["transport-protocol"] == "RTP/AVP"
    assert d["flags"] == ["trust-address"]
    assert d["direction"] == ["internal", "external"]
    assert d["codec"] == {"strip": ["PCMA"], "transcode": ["G722"]}
    assert d["TOS"] == 184
    assert d["sdp"] == SDP
    assert d["received-from"] == ["IP4", "192.0.2.7"]
    assert (d["call-id"], d["from-tag"], d["sip-message-type"]) == ("c1", "ft", "sip_request")
    assert "to-tag" not in d


def test_profile_words_combine() -> None:
    assert ng.build_command(ng.OFFER, "SRTP AVPF", facts()).body["transport-protocol"] == (
        "RTP/SAVPF"
    )
    assert ng.build_command(ng.OFFER, "SRTP AVPF RTP", facts()).body["transport-protocol"] == (
        "RTP/AVPF"
    )


def test_no_flags_means_no_received_from() -> None:
    assert "received-from" not in ng.build_command(ng.OFFER, None, facts()).body


def test_answer_in_reply_keeps_tags_answer_in_ack_swaps_them() -> None:
    reply = ng.build_command(ng.ANSWER, "", facts(is_request=False, to_tag="tt")).body
    assert (reply["from-tag"], reply["to-tag"]) == ("ft", "tt")
    ack = ng.build_command(ng.ANSWER, "", facts(to_tag="tt")).body
    assert (ack["from-tag"], ack["to-tag"]) == ("tt", "ft")
    late_offer = ng.build_command(ng.OFFER, "", facts(is_request=False, to_tag="tt")).body
    assert (late_offer["from-tag"], late_offer["to-tag"]) == ("tt", "ft")


def test_delete_names_the_call_unless_to_tag_is_asked_for() -> None:
    d = ng.build_command(ng.DELETE, "", facts(to_tag="tt", sdp=None)).body
    assert "to-tag" not in d
    assert "sdp" not in d
    d = ng.build_command(ng.DELETE, "to-tag", facts(to_tag="tt", sdp=None)).body
    assert d["to-tag"] == "tt"


def test_force_answer_and_via_branch() -> None:
    cmd = ng.build_command(ng.OFFER, "force-answer via-branch=2", facts(to_tag="tt"))
    assert cmd.op == ng.ANSWER
    assert cmd.body["command"] == "answer"
    assert cmd.body["via-branch"] == "z9hG4bK-second"
    assert ng.build_command(ng.OFFER, "via-branch=auto", facts()).body["via-branch"] == (
        "z9hG4bK-top"
    )


@pytest.mark.parametrize(
    ("op", "flags", "kw", "why"),
    [
        (ng.OFFER, "", {"sdp": None}, "needs an SDP body"),
        (ng.DELETE, "force-answer", {}, "offers only"),
        (ng.OFFER, "call-id", {}, "needs a value"),
        (ng.OFFER, "via-branch=next", {}, "via-branch=1, 2 or auto"),
        (ng.OFFER, "repacketize=x", {}, "needs a number"),
        (ng.ANSWER, "", {"to_tag": None}, "needs a To tag"),
    ],
)
def test_bad_flags_say_why(op: str, flags: str, kw: dict[str, object], why: str) -> None:
    with pytest.raises(ng.NgError, match=why):
        ng.build_command(op, flags, facts(**kw))


# -- datagrams and answers ---------------------------------------------------------------------
def test_answer_matching_by_cookie() -> None:
    cmd = ng.ping_command()
    assert ng.datagram("7_1_", cmd) == b"7_1_ d7:command4:pinge"
    assert ng.answer_of_untrusted("7_1_", b"7_0_ d6:result4:ponge") is None  # an earlier try
    answer = ng.answer_of_untrusted("7_1_", b"7_1_ d6:result4:ponge")
    assert answer is not None
    assert ng.outcome(answer).ok
    with pytest.raises(ng.NgError, match="malformed"):
        ng.answer_of_untrusted("7_1_", b"7_1_ d6:result")
    with pytest.raises(ng.NgError, match="without a result"):
        ng.answer_of_untrusted("7_1_", b"7_1_ li1ee")


def test_outcomes() -> None:
    refused = ng.outcome({b"result": b"error", b"error-reason": b"Unknown call-id"})
    assert (refused.ok, refused.retry, refused.reason) == (False, False, "Unknown call-id")
    full = ng.outcome({b"result": b"error", b"error-reason": b"Ran out of ports"})
    assert full.retry
    assert ng.outcome({b"result": b"load limit"}).retry


# -- relays ------------------------------------------------------------------------------------
def test_relay_sets_weights_and_sticky_choice() -> None:
    sets = parse_sets(["udp:127.0.0.1:2223=3 udp:[::1]:2224", "2 == udp:10.0.0.9"])
    assert sorted(sets) == [0, 2]
    a, b = sets[0]
    assert (a.host, a.port, a.weight, b.host, b.port, b.weight) == (
        "127.0.0.1",
        2223,
        3,
        "::1",
        2224,
        1,
    )
    assert sets[2][0].port == 2223
    relays = Relays(sets, disable_for=60)
    picks = {relays.choose(0, f"call-{i}", 0.0, set()).index for i in range(200)}  # type: ignore[union-attr]
    assert picks == {0, 1}
    first = relays.choose(0, "call-x", 0.0, set())
    assert first is not None
    relays.remember("call-x", first)
    first.fail(now=0.0, disable_for=60)
    other = relays.choose(0, "call-x", 1.0, set())
    assert other is not None
    assert other.index != first.index
    assert relays.choose(0, "call-x", 61.0, {other.index}) is first  # tried again after 60 s
    assert relays.choose(0, "call-x", 1.0, {0, 1}) is None


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("tcp:127.0.0.1:2223", "over UDP"),
        ("x == udp:127.0.0.1", "not a number"),
        ("udp:127.0.0.1:abc", "HOST:PORT"),
        ("udp:127.0.0.1:2223=w", "weight"),
    ],
)
def test_bad_relay_urls(value: str, why: str) -> None:
    with pytest.raises(RelayConfigError, match=why):
        parse_sets([value])


def _messages(err: BaseException) -> str:
    if isinstance(err, BaseExceptionGroup):
        return " ".join(_messages(e) for e in err.exceptions)
    return str(err)


async def test_serving_without_a_relay_is_refused(tmp_path: Path) -> None:
    cfg = make_config(modules=["sl", "rtpengine"])
    script = write_script(tmp_path, "function ksr_request_route() end")
    with pytest.raises(BaseException) as caught:  # noqa: PT011 (a group or the error itself)
        async with running_server(cfg, script):
            pass
    assert "rtpengine_sock is empty" in _messages(caught.value)


def test_bad_relay_url_names_the_parameter() -> None:
    from ksr.core.config import ConfigError
    from ksr.core.server import Server

    with pytest.raises(ConfigError, match=r"\[modparam.rtpengine\] rtpengine_sock: 'tcp:"):
        Server(
            make_config(
                modules=["rtpengine"], modparam={"rtpengine": {"rtpengine_sock": "tcp:h:1"}}
            )
        )
