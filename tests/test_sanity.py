"""sanity module on a real server: each check's verdict and the reply it sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.sip.message import Response, parse_message_untrusted
from tests.support import UdpPeer, make_config, running_server, udp_addr, write_script

LUA = """
function ksr_request_route()
  local rc = KSR.sanity.sanity_check(tonumber(KSR.hdr.get("X-Flags")), tonumber(KSR.hdr.get("X-Uri")))
  if rc < 0 then
    if KSR.hdr.is_present("X-Late") > 0 then KSR.sanity.sanity_reply() end
    return
  end
  KSR.sl.sl_send_reply(200, "Passed " .. rc)
end
"""

STRICT = 1 << 20
ALL = (1 << 15) - 1 | STRICT


def request(
    port: int,
    flags: int,
    uri_checks: int = 15,
    change: dict[str, str | None] | None = None,
    start: str = "INVITE sip:bob@127.0.0.1 SIP/2.0",
    extra: list[str] | None = None,
    body: str = "",
) -> bytes:
    hdrs: dict[str, str | None] = {
        "Via": f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-s{flags}-{len(str(change))};rport",
        "Max-Forwards": "70",
        "From": "<sip:alice@127.0.0.1>;tag=ft",
        "To": "<sip:bob@127.0.0.1>",
        "Call-ID": f"sanity-{flags}-{change}",
        "CSeq": "1 INVITE",
        "Contact": f"<sip:alice@127.0.0.1:{port}>",
        "X-Flags": str(flags),
        "X-Uri": str(uri_checks),
    }
    hdrs.update(change or {})
    lines = [start] + [f"{k}: {v}" for k, v in hdrs.items() if v is not None] + (extra or [])
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


DIGEST = 'Digest username="a", realm="r", nonce="n", uri="sip:bob@127.0.0.1", response="0123"'

# (id, flags, uri_checks, header changes, extra lines, start line, status, reason fragment)
CASES: list[tuple[str, int, int, dict[str, str | None], list[str], str | None, int, str]] = [
    ("all-pass", ALL & ~(2048), 15, {}, [], None, 200, "Passed 1"),
    ("version", 1, 1, {}, [], "INVITE sip:bob@127.0.0.1 SIP/3.0", 505, "Version Not Supported"),
    ("scheme", 2, 1, {}, [], "INVITE mailto:bob@127.0.0.1 SIP/2.0", 416, "Unsupported URI Scheme"),
    ("bad-ruri", 2, 1, {}, [], "INVITE sip:bob@ SIP/2.0", 400, "Bad Request URI"),
    ("tel-ok", 2, 1, {}, [], "INVITE tel:+4930123 SIP/2.0", 200, "Passed"),
    ("required", 4, 1, {"Call-ID": None}, [], None, 0, "no Call-ID: no reply"),
    ("required-dup", 4, 1, {}, ["CSeq: 2 INVITE"], None, 0, "two CSeq: no reply"),
    ("via1", 16384, 1, {"Via": "SIP/2.0/UDP ;branch=x"}, [], None, 0, "no Via to answer to"),
    ("via-version", 8, 1, {}, ["Via: SIP/3.0/UDP 192.0.2.1"], None, 200, "Passed"),
    ("cseq-method", 32, 1, {"CSeq": "1 BYE"}, [], None, 400, "CSeq method does not match"),
    ("cseq-nomethod", 32, 1, {"CSeq": "1"}, [], None, 400, "Missing method in CSeq"),
    ("cseq-value", 64, 1, {"CSeq": "x1 INVITE"}, [], None, 400, "CSeq number is illegal"),
    ("cseq-big", 64, 1, {"CSeq": "4294967296 INVITE"}, [], None, 400, "CSeq number is illegal"),
    ("cseq-max", 64, 1, {"CSeq": "4294967295 INVITE"}, [], None, 200, "Passed"),
    ("expires-bad", 256, 1, {}, ["Expires: soon"], None, 400, "Bad Expires Header"),
    ("expires", 256, 1, {}, ["Expires: 99999999999"], None, 400, "Expires value is illegal"),
    ("expires-ok", 256, 1, {}, ["Expires: 3600"], None, 200, "Passed"),
    (
        "proxy-require",
        512,
        1,
        {},
        ["Proxy-Require: foo, bar"],
        None,
        420,
        "Bad Proxy Require Extension",
    ),
    ("proxy-require-ok", 512, 1, {}, ["Proxy-Require: foo"], None, 200, "Passed"),
    (
        "from-uri",
        1024,
        2,
        {"From": "<http://x.example.com>;tag=1"},
        [],
        None,
        400,
        "Invalid From Header",
    ),
    ("to-header", 1024, 4, {"To": '"open <sip:b@h>'}, [], None, 400, "Invalid To Header"),
    ("contact-uri", 1024, 8, {"Contact": "<sip:@>"}, [], None, 400, "Bad Contact URI"),
    ("contact-unchecked", 1024, 7, {"Contact": "<sip:@>"}, [], None, 200, "Passed"),
    (
        "digest-basic",
        2048,
        1,
        {},
        ["Authorization: Basic YTpi"],
        None,
        0,
        "not Digest: check_digest fails without a reply",
    ),
    (
        "digest-partial",
        2048,
        1,
        {},
        ['Authorization: Digest username="a"'],
        None,
        400,
        "Bad Auth Credentials",
    ),
    ("digest-ok", 2048, 1, {}, [f"Authorization: {DIGEST}"], None, 200, "Passed"),
    ("auth-basic-ok", 8192, 1, {}, ["Authorization: Basic YTpi"], None, 200, "Passed"),
    ("duptags", 4096, 1, {"From": "<sip:a@h>;tag=1;tag=2"}, [], None, 400, "Many From Tag Params"),
    (
        "digest-empty-user",
        2048,
        1,
        {},
        ["Authorization: " + DIGEST.replace('username="a"', 'username=""')],
        None,
        400,
        "Auth Empty User",
    ),
    ("rfc3261-lr", 32768, 1, {}, ["Route: <sip:p.example.com>"], None, 0, "Route without lr"),
    ("rfc3261-ok", 32768, 1, {}, ["Route: <sip:p.example.com;lr>"], None, 200, "Passed"),
    ("strict-mf", STRICT, 1, {"Max-Forwards": "256"}, [], None, 400, "Max-Forwards"),
    ("strict-dup", STRICT, 1, {}, ["To: <sip:x@h>"], None, 400, "Duplicate To"),
    (
        "strict-date",
        STRICT,
        1,
        {},
        ["Date: Sat, 13 Nov 2010 23:29:00 PST"],
        None,
        400,
        "Malformed Date",
    ),
    ("strict-date-ok", STRICT, 1, {}, ["Date: Sat, 13 Nov 2010 23:29:00 GMT"], None, 200, "Passed"),
    ("strict-dn", STRICT, 1, {"From": "A, B <sip:a@h>;tag=1"}, [], None, 400, "Malformed From"),
    (
        "strict-contact",
        STRICT,
        1,
        {"Contact": "sip:a@h?Route=x"},
        [],
        None,
        400,
        "Malformed Contact",
    ),
    (
        "strict-ruri-hdrs",
        STRICT,
        1,
        {},
        [],
        "INVITE sip:bob@127.0.0.1?x=y SIP/2.0",
        400,
        "Bad Request URI",
    ),
    ("strict-star", STRICT, 1, {"Contact": "<sip:a@h>, *"}, [], None, 400, "Malformed Contact"),
    (
        "strict-ok",
        STRICT,
        1,
        {"Contact": '"Q \\" x" <sip:a@h?Route=x>;expires=5, <sip:b@h>'},
        [],
        None,
        200,
        "Passed",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_checks(tmp_path: Path, case: tuple) -> None:  # type: ignore[type-arg]
    _id, flags, uri_checks, change, extra, start, status, reason = case
    cfg = make_config(["sl", "sanity"], {"sanity": {"proxy_require": "foo, other"}})
    async with running_server(cfg, write_script(tmp_path, LUA)) as server:
        peer = await UdpPeer().bind()
        kw = {"start": start} if start else {}
        await peer.send(
            request(peer.port, flags, uri_checks, change, extra=extra, **kw), udp_addr(server)
        )
        if status == 0:
            assert await peer.nothing(0.3)
            return
        rpl = await peer.recv_reply()
        assert (rpl.status, rpl.reason[: len(reason)]) == (status, reason), rpl.reason
        if status == 420:
            assert rpl.get("unsupported") == "bar"
        peer.close()


async def test_noreply_and_sanity_reply(tmp_path: Path) -> None:
    cfg = make_config(["sl", "sanity"], {"sanity": {"noreply": 1}})
    async with running_server(cfg, write_script(tmp_path, LUA)) as server:
        peer = await UdpPeer().bind()
        await peer.send(request(peer.port, 32, 1, {"CSeq": "1 BYE"}), udp_addr(server))
        assert await peer.nothing(0.3)
        await peer.send(
            request(peer.port, 32, 1, {"CSeq": "2 BYE"}, extra=["X-Late: 1"]), udp_addr(server)
        )
        rpl = await peer.recv_reply()
        assert (rpl.status, rpl.reason) == (400, "CSeq method does not match request method")
        peer.close()


async def test_ack_is_never_answered(tmp_path: Path) -> None:
    async with running_server(make_config(["sl", "sanity"]), write_script(tmp_path, LUA)) as server:
        peer = await UdpPeer().bind()
        data = request(
            peer.port, 32, 1, {"CSeq": "1 INVITE"}, start="ACK sip:bob@127.0.0.1 SIP/2.0"
        )
        await peer.send(data, udp_addr(server))
        assert await peer.nothing(0.3)
        peer.close()


async def test_defaults_function(tmp_path: Path) -> None:
    lua = """
function ksr_request_route()
  if KSR.sanity.sanity_check_defaults() > 0 then KSR.sl.sl_send_reply(200, "Passed") end
end
"""
    cfg = make_config(["sl", "sanity"], {"sanity": {"default_checks": 64}})
    async with running_server(cfg, write_script(tmp_path, lua)) as server:
        peer = await UdpPeer().bind()
        # 32 (CSeq method) is not in default_checks: passes; 64 (CSeq value) is
        await peer.send(request(peer.port, 0, 1, {"CSeq": "1 BYE"}), udp_addr(server))
        assert (await peer.recv_reply()).status == 200
        await peer.send(request(peer.port, 0, 1, {"CSeq": "99999999999 INVITE"}), udp_addr(server))
        rpl = parse_message_untrusted(await peer.recv())
        assert isinstance(rpl, Response)
        assert rpl.status == 400
        peer.close()


def raw_request(port: int, flags: int, cl: str, body: str) -> bytes:
    return (
        f"MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-cl{cl}\r\n"
        f"From: <sip:alice@127.0.0.1>;tag=ft\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: cl-{cl}\r\n"
        f"CSeq: 1 MESSAGE\r\nX-Flags: {flags}\r\nX-Uri: 1\r\nContent-Length: {cl}\r\n\r\n{body}"
    ).encode()


@pytest.mark.parametrize(
    ("cl", "body", "status", "reason"),
    [
        ("9", "", 400, "Content-Length mis-match"),  # reaches the script, as in Kamailio
        ("20", "short", 400, "Content-Length mis-match"),
        ("x", "", 400, "Content-Length Failure"),
        ("5", "hello", 200, "Passed 1"),
    ],
)
async def test_content_length_is_judged_by_the_script(
    tmp_path: Path, cl: str, body: str, status: int, reason: str
) -> None:
    """A datagram whose Content-Length exceeds its body (or is no number) is not refused by
    the core: the script runs and sanity_check's Content-Length check (128) answers it."""
    async with running_server(make_config(["sl", "sanity"]), write_script(tmp_path, LUA)) as server:
        peer = await UdpPeer().bind()
        await peer.send(raw_request(peer.port, 128, cl, body), udp_addr(server))
        rpl = await peer.recv_reply()
        assert (rpl.status, rpl.reason) == (status, reason)
        peer.close()


async def test_sanity_reply_without_a_failure_is_500(tmp_path: Path) -> None:
    lua = """
function ksr_request_route()
  KSR.sanity.sanity_reply()
end
"""
    cfg = make_config(["sl", "sanity"], {"sanity": {"noreply": 1}})
    async with running_server(cfg, write_script(tmp_path, lua)) as server:
        peer = await UdpPeer().bind()
        await peer.send(request(peer.port, 0), udp_addr(server))
        rpl = await peer.recv_reply()
        assert (rpl.status, rpl.reason) == (500, "Server Sanity Failure")
        peer.close()


def test_uri_verdicts_are_remembered_per_text_and_bounded() -> None:
    """The URI checks remember what they learned per URI text: the same text gets the same
    verdict again (good or bad), and the table does not grow past its bound."""
    from ksr.modules.sanity import checks

    checks._FACTS.clear()
    for _ in range(2):
        assert checks.uri_facts("sip:bob@127.0.0.1") == ("sip", True)
        assert checks.uri_facts("sip:bob@") is None  # no host: does not parse
        assert checks.uri_facts("mailto:bob@127.0.0.1") == ("mailto", False)
    for i in range(checks._FACTS_MAX + 10):
        checks.uri_facts(f"sip:u{i}@127.0.0.1")
    assert len(checks._FACTS) <= checks._FACTS_MAX


def test_a_to_equal_to_the_from_shares_its_parsed_uri() -> None:
    """The URI checks parse a REGISTER's From URI once for both From and To when the two
    are the same text (registrar then reads the AOR from the To without parsing again);
    a different To keeps its own parse, and a bad To is still refused."""
    from ksr.modules.sanity import checks

    def job_for(to: str) -> checks.Job:
        port = 5099
        msg = parse_message_untrusted(
            request(
                port,
                0,
                change={"From": "<sip:carol@127.0.0.1>;tag=f1", "To": to},
                start="REGISTER sip:127.0.0.1 SIP/2.0",
            )
        )
        return checks.Job(msg, None, "udp", checks.URI_FROM | checks.URI_TO, frozenset())

    checks._FACTS.clear()
    same = job_for("<sip:carol@127.0.0.1>")
    assert checks.parse_uris(same) is None
    assert same.msg.to.uri is same.msg.from_.uri  # the To was not parsed on its own
    assert same.msg.to.uri.user == "carol"

    other = job_for("<sip:dave@127.0.0.1>")
    assert checks.parse_uris(other) is None
    assert other.msg.to.uri.user == "dave"
    assert other.msg.to.uri is not other.msg.from_.uri

    bad = job_for("<sip:carol@>")
    failure = checks.parse_uris(bad)
    assert failure is not None
    assert (failure.code, failure.reason) == (400, "Invalid To Header")


def test_run_checks_follows_the_table_order() -> None:
    """run_checks calls the checks one by one in code; what it answers is what going down
    ``CHECKS`` in order answers (the first failure among the selected checks, the request-only
    ones skipped for replies), for every case's message, as a request and as a reply."""
    from ksr.modules.sanity import checks

    def by_table(job: checks.Job, mask: int) -> checks.Failure | None:
        for bit, check, on_replies in checks.CHECKS:
            if mask & bit and (job.msg.is_request or on_replies):
                failure = check(job)
                if failure is not None:
                    return failure
        return None

    def verdict(failure: checks.Failure | None) -> tuple[int, str, list[str]] | None:
        return None if failure is None else (failure.code, failure.reason, failure.headers)

    masks = [1 << n for n in range(16)] + [STRICT, ALL, 17895, checks.DEFAULT_CHECKS]
    compared = failed = 0
    for _id, _flags, uri_checks, change, extra, start, _status, _reason in CASES:
        kw = {"start": start} if start else {}
        data = request(5099, 0, uri_checks, change, extra=extra, **kw)
        as_reply = b"SIP/2.0 200 OK" + data[data.index(b"\r\n") :]
        for raw in (data, as_reply):
            for mask in masks:
                want = by_table(
                    checks.Job(
                        parse_message_untrusted(raw), None, "udp", uri_checks, frozenset({"foo"})
                    ),
                    mask,
                )
                got = checks.run_checks(
                    checks.Job(
                        parse_message_untrusted(raw), None, "udp", uri_checks, frozenset({"foo"})
                    ),
                    mask,
                )
                assert verdict(got) == verdict(want), (_id, raw[:12], mask)
                compared += 1
                failed += want is not None
    assert failed > 50  # both verdicts well represented
    assert compared - failed > 50
