"""RFC 4475 torture messages: the parser, then a real server answering each one.

The server runs a production-style request init (force_rport, process_maxfwd, sanity_check
with the ksr strict bit, then 200 for OPTIONS / 404 otherwise) on a real UDP socket. Every
send the server makes is recorded (and still performed), so replies routed to the Via
addresses in the messages (192.0.2.x, example.com) are seen too.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from ksr.core.server import Server
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.message import Request, Response, parse_message_untrusted
from tests.support import (
    RFC4475,
    UdpPeer,
    make_config,
    needs_rfc4475,
    running_server,
    sip_request,
    udp_addr,
    write_script,
)

pytestmark = needs_rfc4475

# 17895 = Kamailio's default-config set (1|2|4|32|64|128|256|1024|16384), + 512 Proxy-Require,
# + 1048576 the ksr strict-syntax bit.
FLAGS = 17895 | 512 | 1048576

# file -> (expected status or None for no answer, why)
EXPECTED: dict[str, tuple[int | None, str]] = {
    "wsinv.dat": (404, "valid INVITE with folding and odd spacing reaches the script"),
    "intmeth.dat": (404, "valid extension method made of every token character"),
    "esc01.dat": (404, "valid INVITE with %-escapes"),
    "escnull.dat": (404, "valid REGISTER with %00 in user parts"),
    "esc02.dat": (404, "RE%47IST%45R is an unknown method, not REGISTER"),
    "lwsdisp.dat": (200, "valid OPTIONS, display name glued to '<'"),
    "longreq.dat": (404, "valid long INVITE, reply carries all Vias"),
    "dblreq.dat": (404, "REGISTER answered once; the INVITE after Content-Length is ignored"),
    "semiuri.dat": (200, "valid OPTIONS, ';' inside the R-URI user part"),
    "transports.dat": (200, "valid OPTIONS with unknown transports in lower Vias"),
    "mpart01.dat": (404, "valid MESSAGE with binary multipart body"),
    "unreason.dat": (None, "a response that is not ours: dropped"),
    "noreason.dat": (None, "a response that is not ours: dropped"),
    "badinv01.dat": (400, "empty Via and Contact parameters (strict)"),
    "clerr.dat": (400, "Content-Length larger than the datagram: reaches the script (sanity CL)"),
    "ncl.dat": (400, "negative Content-Length: reaches the script (sanity CL)"),
    "scalar02.dat": (400, "CSeq number beyond 2**32 (cseq value check)"),
    "scalarlg.dat": (None, "a response: never answered"),
    "quotbal.dat": (400, "unterminated quoted display name in To (parse URIs)"),
    "ltgtruri.dat": (400, "R-URI in <> is not a URI (ruri scheme check: Bad Request URI)"),
    "lwsruri.dat": (400, "whitespace inside the R-URI: malformed Request-Line (parser)"),
    "lwsstart.dat": (400, "double SP in the Request-Line (parser)"),
    "trws.dat": (400, "trailing SP after SIP/2.0 (parser)"),
    "escruri.dat": (400, "?headers in the R-URI (strict)"),
    "baddate.dat": (400, "Date not in GMT (strict)"),
    "regbadct.dat": (400, "Contact with ?headers outside <> (strict)"),
    "badaspec.dat": (400, "spaces inside <addr-spec> of To (strict)"),
    "baddn.dat": (400, "unquoted display name with non-token characters (strict)"),
    "badvers.dat": (505, "SIP/7.0 (ruri sip version check)"),
    "mismatch01.dat": (400, "CSeq method INVITE on an OPTIONS (cseq method check)"),
    "mismatch02.dat": (400, "CSeq method differs from NEWMETHOD (cseq method check)"),
    "bigcode.dat": (None, "status code 4294967301: unparseable response, dropped"),
    "badbranch.dat": (200, "branch is just the magic cookie: syntactically fine"),
    "insuf.dat": (None, "no Call-ID/From/To: required headers check fails, no reply"),
    "unkscm.dat": (416, "unknown R-URI scheme"),
    "novelsc.dat": (416, "soap.beep R-URI scheme"),
    "unksm2.dat": (400, "From/To URIs with schemes ksr cannot parse (parse URIs check)"),
    "bext01.dat": (420, "Proxy-Require with an unsupported option tag"),
    "invut.dat": (404, "unknown body type is the UAS's business (415); a proxy routes it"),
    "regaut01.dat": (404, "unknown Authorization scheme is the registrar's business"),
    "multi01.dat": (None, "two CSeq/Call-ID/From/To headers: required headers check, no reply"),
    "mcl01.dat": (400, "conflicting Content-Length headers (parser)"),
    "bcast.dat": (None, "a response whose next Via is 255.255.255.255: dropped, never sent"),
    "zeromf.dat": (483, "Max-Forwards: 0"),
    "cparam01.dat": (404, "valid REGISTER, Contact header parameter"),
    "cparam02.dat": (404, "valid REGISTER, Contact URI parameter inside <>"),
    "regescrt.dat": (404, "valid REGISTER, ?headers inside the Contact <>"),
    "sdp01.dat": (404, "valid INVITE (406 is the UAS's business)"),
    "inv2543.dat": (404, "RFC 2543 INVITE: no branch, Max-Forwards or Content-Length"),
    "test.dat": (None, "no SIP-Version on the request line: cannot answer"),
}

# reason phrase fragments for answers where the reason says what was wrong
REASONS: dict[str, str] = {
    "badvers.dat": "Version Not Supported",
    "mismatch01.dat": "CSeq method does not match",
    "bext01.dat": "Bad Proxy Require Extension",
    "clerr.dat": "Content-Length mis-match",
    "ncl.dat": "Content-Length Failure",
    "scalar02.dat": "CSeq number is illegal",
    "baddate.dat": "Date",
    "escruri.dat": "Bad Request URI",
    "mcl01.dat": "Content-Length",
    "lwsstart.dat": "Request-Line",
}

LUA = """
function ksr_request_route()
  KSR.force_rport()
  if KSR.maxfwd.process_maxfwd(10) == -1 then
    KSR.sl.sl_send_reply(483, "Too Many Hops")
    KSR.x.exit()
  end
  if KSR.sanity.sanity_check(FLAGS, 7) < 0 then
    KSR.x.exit()
  end
  if KSR.is_OPTIONS() then
    KSR.sl.sl_send_reply(200, "OK")
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(404, "Not Found")
end
""".replace("FLAGS", str(FLAGS))

PY = """
import KSR

class Router:
    def ksr_request_route(self, msg):
        KSR.force_rport()
        if KSR.maxfwd.process_maxfwd(10) == -1:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return 1
        if KSR.sanity.sanity_check(FLAGS, 7) < 0:
            return 1
        if KSR.is_OPTIONS():
            KSR.sl.sl_send_reply(200, "OK")
            return 1
        KSR.sl.sl_send_reply(404, "Not Found")
        return 1

def mod_init():
    return Router()
""".replace("FLAGS", str(FLAGS))


def _index() -> list[dict[str, str]]:
    if not RFC4475.is_dir():
        return []  # the module is skipped (needs_rfc4475)
    with open(RFC4475 / "index.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_table_covers_every_file() -> None:
    files = {p.name for p in RFC4475.glob("*.dat")}
    assert files == set(EXPECTED)
    assert len(files) == 50  # the 49 RFC messages and test.dat


@pytest.mark.parametrize(
    "row", [r for r in _index() if r["rfc_verdict"].startswith("valid")], ids=lambda r: r["file"]
)
def test_valid_messages_parse(row: dict[str, str]) -> None:
    data = (RFC4475 / row["file"]).read_bytes()
    msg = parse_message_untrusted(data)
    assert msg.top_via.host
    assert msg.cseq.method
    assert msg.from_.uri_text
    assert msg.to.uri_text
    assert msg.call_id
    if isinstance(msg, Request):
        assert msg.parsed_uri.scheme == "sip"
        assert msg.cseq.method == msg.method
    else:
        assert isinstance(msg, Response)
        assert msg.status in (100, 200)
    if row["file"] != "dblreq.dat":
        assert msg.to_bytes() == data  # nothing changed: byte-exact


def test_special_valid_messages() -> None:
    dbl = (RFC4475 / "dblreq.dat").read_bytes()
    msg = parse_message_untrusted(dbl)
    assert isinstance(msg, Request)
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert b"INVITE" in dbl
    assert b"INVITE" not in msg.to_bytes()
    mp = (RFC4475 / "mpart01.dat").read_bytes()
    msg = parse_message_untrusted(mp)
    assert len(msg.body) == int(msg.get("content-length") or -1)
    assert b"\r\n\r\n" in msg.body
    esc = parse_message_untrusted((RFC4475 / "esc02.dat").read_bytes())
    assert isinstance(esc, Request)
    assert esc.method == "RE%47IST%45R"
    ws = parse_message_untrusted((RFC4475 / "wsinv.dat").read_bytes())
    assert [v.transport for v in ws.vias] == ["UDP", "TCP", "UDP"]
    assert ws.to.tag == "1918181833n"
    assert ws.from_.tag == "98asjd8"
    assert ws.cseq.number == 9
    assert ws.get("max-forwards") == "0068"
    semi = parse_message_untrusted((RFC4475 / "semiuri.dat").read_bytes())
    assert isinstance(semi, Request)
    assert semi.parsed_uri.user == "user;par=u%40example.net"
    assert semi.parsed_uri.params == {}


# rejected by the parser: the 400 goes where the Via says (RFC 3261 §18.2.2), not to us
PARSER_REJECTS = {"mcl01.dat", "lwsruri.dat", "lwsstart.dat", "trws.dat"}


async def _run_corpus(
    server: Server, arrived: dict[str, list[int]]
) -> dict[str, list[tuple[str, int, bytes]]]:
    sent: list[tuple[str, int, bytes]] = []
    real_send = server.send

    def recording_send(dest: Any, data: bytes, sock: Any = None, conn_id: int = 0) -> bool:
        sent.append((dest.host, dest.port, data))
        return real_send(dest, data, sock, conn_id)

    server.send = recording_send
    peer = await UdpPeer().bind()
    results: dict[str, list[tuple[str, int, bytes]]] = {}
    try:
        for i, name in enumerate(sorted(EXPECTED)):
            sent.clear()
            await peer.send((RFC4475 / name).read_bytes(), udp_addr(server))
            # a probe after each file: once it is answered, the file has been handled
            probe = sip_request(
                "OPTIONS", port=peer.port, call_id=f"probe-{i}", branch=f"z9hG4bK-p{i}"
            )
            await peer.send(probe, udp_addr(server))
            arrived[name] = []
            while True:
                rpl = parse_message_untrusted(await peer.recv())
                assert isinstance(rpl, Response)
                if rpl.get("call-id") == f"probe-{i}":
                    assert rpl.status == 200
                    break
                arrived[name].append(rpl.status)
            results[name] = [s for s in sent if f"probe-{i}".encode() not in s[2]]
        # still alive and answering after the whole corpus
        await peer.send(sip_request("OPTIONS", port=peer.port, call_id="final"), udp_addr(server))
        rpl = await peer.recv_reply()
        assert rpl.status == 200
        assert rpl.get("call-id") == "final"
    finally:
        peer.close()
    return results


def _statuses(results: dict[str, list[tuple[str, int, bytes]]]) -> dict[str, list[tuple[int, str]]]:
    out: dict[str, list[tuple[int, str]]] = {}
    for name, sends in results.items():
        replies = []
        for host, _port, data in sends:
            assert host != "255.255.255.255", name
            msg = parse_message_untrusted(data)
            assert isinstance(msg, Response), f"{name}: the server sent a request"
            replies.append((msg.status, msg.reason))
        out[name] = replies
    return out


async def _answers(tmp_path: Path, suffix: str, text: str) -> dict[str, list[tuple[int, str]]]:
    script = write_script(tmp_path, text, suffix)
    arrived: dict[str, list[int]] = {}
    async with running_server(make_config(["sl", "maxfwd", "sanity"]), script) as server:
        answers = _statuses(await _run_corpus(server, arrived))
    # with force_rport every answer from the script really comes back over UDP
    for name, (status, _why) in EXPECTED.items():
        want = [] if status is None or name in PARSER_REJECTS else [status]
        assert arrived[name] == want, name
    return answers


@pytest.mark.parametrize(("suffix", "text"), [(".lua", LUA), (".py", PY)], ids=["lua", "python"])
async def test_corpus_answers(tmp_path: Path, suffix: str, text: str) -> None:
    answers = await _answers(tmp_path, suffix, text)
    wrong = {}
    for name, (status, why) in EXPECTED.items():
        got = answers[name]
        want = [] if status is None else [status]
        if [s for s, _ in got] != want:
            wrong[name] = (got, want, why)
        elif name in REASONS:
            assert REASONS[name] in got[0][1], (name, got)
    assert not wrong, wrong


async def test_lua_and_python_answer_alike(tmp_path: Path) -> None:
    (tmp_path / "lua").mkdir()
    (tmp_path / "py").mkdir()
    lua = await _answers(tmp_path / "lua", ".lua", LUA)
    py = await _answers(tmp_path / "py", ".py", PY)
    assert lua == py


def test_unparseable_ones_raise_only_protocol_errors() -> None:
    for name in ("bigcode.dat", "test.dat", "lwsruri.dat", "mcl01.dat"):
        with pytest.raises(RemoteProtocolError):
            parse_message_untrusted((RFC4475 / name).read_bytes())
    # a datagram is the whole message: a Content-Length it cannot hold is the script's to
    # judge (sanity), as in Kamailio; on a stream it cannot be framed
    for name in ("clerr.dat", "ncl.dat"):
        data = (RFC4475 / name).read_bytes()
        assert parse_message_untrusted(data).body == data[data.index(b"\r\n\r\n") + 4 :]
        with pytest.raises(RemoteProtocolError):
            parse_message_untrusted(data, datagram=False)


async def test_mutated_corpus_never_breaks_the_server(tmp_path: Path) -> None:
    import logging
    import random

    rng = random.Random(4475)
    seeds = [p.read_bytes() for p in sorted(RFC4475.glob("*.dat"))]
    errors: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info:
                errors.append(record)

    handler = Catch()
    logging.getLogger("ksr").addHandler(handler)
    try:
        script = write_script(tmp_path, LUA)
        async with running_server(make_config(["sl", "maxfwd", "sanity"]), script) as server:
            real_send = server.send
            server.send = lambda *a, **k: True  # never spray replies
            peer = await UdpPeer().bind()
            for _ in range(300):
                data = bytearray(rng.choice(seeds))
                for _ in range(rng.randint(1, 5)):
                    pos = rng.randrange(len(data))
                    choice = rng.random()
                    if choice < 0.4:
                        data[pos] = rng.randrange(256)
                    elif choice < 0.7:
                        data[pos:pos] = rng.choice([b"\r\n", b";", b",", b"<", b'"', b" ", b"\x00"])
                    else:
                        del data[pos : pos + rng.randint(1, 30)]
                await peer.send(bytes(data), udp_addr(server))
            server.send = real_send  # the real send again, for the final answer
            await peer.send(
                sip_request("OPTIONS", port=peer.port, call_id="after"), udp_addr(server)
            )
            rpl = await peer.recv_reply()
            assert rpl.status == 200
            peer.close()
    finally:
        logging.getLogger("ksr").removeHandler(handler)
    assert not errors, [r.getMessage() for r in errors[:3]]
