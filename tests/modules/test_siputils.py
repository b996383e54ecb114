"""KSR.siputils in both engines, and options_reply over real UDP."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.core.context import MsgContext
from ksr.sip.message import parse_message_untrusted
from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

MSG = sip_request(
    "INVITE",
    ruri="sip:bob@example.com;transport=udp;nat;gr=urn:x",
    extra='Proxy-Authorization: Digest username="alice", realm="ex.com", nonce="n", uri="sip:bob@example.com", response="r"',
)


@pytest.mark.parametrize("lang", LANGS)
def test_checks(lang: str, tmp_path: Path) -> None:
    s = server_with(["siputils"])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.siputils.has_totag()",
            "KSR.siputils.is_request()",
            "KSR.siputils.is_reply()",
            "KSR.siputils.is_first_hop()",
            "KSR.siputils.is_sip()",
            "KSR.siputils.is_http()",
            "KSR.siputils.is_uri('sip:a@b.c:5060')",
            "KSR.siputils.is_uri('nonsense')",
            "KSR.siputils.is_uri('tel:+123')",
            "KSR.siputils.is_user('alice')",
            "KSR.siputils.is_user('bob')",
            "KSR.siputils.is_tel_number('+4930123')",
            "KSR.siputils.is_tel_number('+0123')",
            "KSR.siputils.is_tel_number('12a')",
            "KSR.siputils.is_numeric('123')",
            "KSR.siputils.is_numeric('12a')",
            "KSR.siputils.is_numeric('')",
            "KSR.siputils.is_alphanum('abc123')",
            "KSR.siputils.is_alphanum('ab-c')",
            "KSR.siputils.is_alphanumex('ab-c', '-')",
            "KSR.siputils.sip_parse_headers()",
        ],
        tmp_path,
        context(s, MSG),
    )
    assert got == [-1, 1, -1, 1, 1, -1, 1, -1, 1, 1, -1, 1, -2, -2, 1, -3, -2, 1, -3, 1, 1]


@pytest.mark.parametrize("lang", LANGS)
def test_has_totag_answers_as_the_module_function(lang: str, tmp_path: Path) -> None:
    """The binding answers has_totag itself (inline): the module's function is the reference,
    for a request with a To tag, one without, and a reply."""
    s = server_with(["siputils"])
    module = s.modules["siputils"]
    reply = (
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1\r\n"
        "From: <sip:a@b>;tag=f\r\nTo: <sip:c@d>;tag=t9\r\nCall-ID: c1\r\n"
        "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    answer = MsgContext(s, parse_message_untrusted(reply.encode()), "127.0.0.1", 5090, None)
    for ctx, want in (
        (context(s, sip_request("BYE", to_tag="abc")), 1),
        (context(s, sip_request("INVITE")), -1),
        (answer, 1),
    ):
        assert module.has_totag(ctx) == want
        assert run_exprs(s, lang, ["KSR.siputils.has_totag()"], tmp_path, ctx) == [want]


@pytest.mark.parametrize("lang", LANGS)
def test_uri_params_and_compare(lang: str, tmp_path: Path) -> None:
    s = server_with(["siputils"])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.siputils.uri_param('nat')",
            "KSR.siputils.uri_param('transport')",
            "KSR.siputils.uri_param_value('transport', 'udp')",
            "KSR.siputils.uri_param_any('transport')",
            "KSR.siputils.uri_param_any('lr')",
            "KSR.siputils.is_gruu()",
            "KSR.siputils.uri_param_rm('nat')",
            "KSR.siputils.add_uri_param('lr')",
            "KSR.pv.get('$ru')",
            "KSR.siputils.cmp_uri('sip:A@EXAMPLE.com;transport=udp', 'sip:A@example.com;transport=UDP')",
            "KSR.siputils.cmp_uri('sip:a@example.com', 'sip:A@example.com')",
            "KSR.siputils.cmp_uri('sip:a@example.com;transport=tcp', 'sip:a@example.com')",
            "KSR.siputils.cmp_uri('sip:a@x', 'bad uri')",
            "KSR.siputils.cmp_aor('sips:a@example.com;x=1', 'sip:a@EXAMPLE.com')",
            "KSR.siputils.cmp_aor('sip:a@example.com:5080', 'sip:a@example.com')",
            "KSR.siputils.cmp_hdr_name('f', 'From')",
            "KSR.siputils.cmp_hdr_name('To', 'From')",
        ],
        tmp_path,
        context(s, MSG),
    )
    assert got == [
        1,
        -1,
        1,
        1,
        -1,
        1,
        1,
        1,
        "sip:bob@example.com;transport=udp;gr=urn:x;lr",
        1,
        -1,
        -1,
        -2,
        1,
        -1,
        1,
        -1,
    ]


@pytest.mark.parametrize("lang", LANGS)
def test_contact_encodings_round_trip(lang: str, tmp_path: Path) -> None:
    s = server_with(["siputils"])
    msg = sip_request("REGISTER", extra="Date: Sat, 13 Nov 2010 23:29:00 GMT")
    ctx = context(s, msg)
    got = run_exprs(
        s,
        lang,
        [
            "KSR.siputils.encode_contact('enc', '192.0.2.1')",
            "KSR.siputils.contact_param_check('x')",
            "KSR.siputils.hdr_date_check(60)",
        ],
        tmp_path,
        ctx,
    )
    assert got == [1, -1, -1]
    encoded = ctx.apply_lumps().get("contact")
    assert encoded == "<sip:enc*alice**127.0.0.1*5090*@192.0.2.1>"
    # decoding the encoded URI as R-URI gives the original contact back
    back = sip_request("INVITE", ruri="sip:enc*alice**127.0.0.1*5090*@192.0.2.1")
    ctx2 = context(s, back)
    assert run_exprs(
        s, lang, ["KSR.siputils.decode_contact()", "KSR.pv.get('$ru')"], tmp_path, ctx2
    ) == [1, "sip:alice@127.0.0.1:5090"]
    ctx3 = context(s, msg)
    assert run_exprs(
        s, lang, ["KSR.siputils.contact_param_encode('kc', 'sip:192.0.2.9')"], tmp_path, ctx3
    ) == [1]
    enc_uri = ctx3.apply_lumps().get("contact").strip("<>")
    assert enc_uri.startswith("sip:192.0.2.9;kc=")
    ctx4 = context(s, sip_request("INVITE", ruri=enc_uri))
    got = run_exprs(
        s,
        lang,
        ["KSR.siputils.contact_param_decode_ruri('kc')", "KSR.pv.get('$ru')"],
        tmp_path,
        ctx4,
    )
    assert got == [1, "sip:alice@127.0.0.1:5090"]


LUA_OPTIONS = """
function ksr_request_route()
  if KSR.is_OPTIONS() and KSR.siputils.options_reply() > 0 then return end
  KSR.sl.sl_send_reply(404, "No")
end
"""


async def test_options_reply(tmp_path: Path) -> None:
    cfg = make_config(["sl", "siputils"], {"siputils": {"options_support": "path"}})
    async with running_server(cfg, write_script(tmp_path, LUA_OPTIONS)) as server:
        peer = await UdpPeer().bind()
        host, port = udp_addr(server)
        await peer.send(
            sip_request("OPTIONS", ruri=f"sip:{host}:{port}", port=peer.port), (host, port)
        )
        rpl = await peer.recv_reply()
        assert rpl.status == 200
        assert "INVITE" in (rpl.get("allow") or "")
        assert rpl.get("accept") == "*/*"
        assert rpl.get("supported") == "path"
        # with a user part it is not for the server: options_reply refuses
        await peer.send(sip_request("OPTIONS", port=peer.port, branch="z9hG4bK-u"), (host, port))
        assert (await peer.recv_reply()).status == 404
        peer.close()
