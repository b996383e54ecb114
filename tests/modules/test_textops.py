"""KSR.textops in both engines: searches read the received message, changes are lumps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script

SDP = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"
MSG = sip_request(
    "INVITE",
    ruri="sip:+4930123@example.com;user=phone",
    extra="Content-Type: application/sdp\nPrivacy: id;header\nX-Tag: alpha\nX-Tag: beta\nX-Other: keep",
    body=SDP,
)
MULTI = (
    "--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
    "--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1--\r\n"
)


@pytest.mark.parametrize("lang", LANGS)
def test_searches_and_presence(lang: str, tmp_path: Path) -> None:
    s = server_with(["textops"])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.textops.search('^x-tag: BETA')",
            "KSR.textops.search('nothing-like-this')",
            "KSR.textops.search_body('m=audio [0-9]+')",
            "KSR.textops.search_hf('X-Tag', 'bet', 'a')",
            "KSR.textops.search_hf('X-Tag', 'bet', 'f')",
            "KSR.textops.is_present_hf('x-tag')",
            "KSR.textops.is_present_hf_re('^X-Oth')",
            "KSR.textops.remove_hf('X-Tag')",
            "KSR.textops.is_present_hf('X-Tag')",  # still 1: removal is a lump
            "KSR.textops.remove_hf('X-Never')",
            "KSR.textops.remove_hf_re('^X-Nev')",
            "KSR.textops.has_body()",
            "KSR.textops.has_body_type('application/sdp')",
            "KSR.textops.has_body_type('text/plain')",
            "KSR.textops.is_privacy('header')",
            "KSR.textops.is_privacy('session')",
            "KSR.textops.is_audio_on_hold()",
        ],
        tmp_path,
        context(s, MSG),
    )
    assert got == [1, -1, 1, 1, -1, 1, 1, 1, 1, 1, 1, 1, 1, -1, 1, -1, 1]


@pytest.mark.parametrize("lang", LANGS)
def test_string_helpers(lang: str, tmp_path: Path) -> None:
    s = server_with(["textops"])
    got = run_exprs(
        s,
        lang,
        [
            "KSR.textops.cmp_str('abc', 'abc')",
            "KSR.textops.cmp_str('abc', 'abd')",
            "KSR.textops.cmp_str('b', 'a')",
            "KSR.textops.cmp_istr('ABC', 'abc')",
            "KSR.textops.str_find('hello world', 'world')",
            "KSR.textops.str_find('hello', 'x')",
            "KSR.textops.str_ifind('Hello World', 'WORLD')",
            "KSR.textops.starts_with('sip:x', 'sip:')",
            "KSR.textops.ends_with('a.lua', '.py')",
            "KSR.textops.in_list('b', 'a, b ,c', ',')",
            "KSR.textops.in_list('d', 'a,b,c', ',')",
            "KSR.textops.in_list_prefix('49301234', '33,4930', ',')",
            "KSR.textops.search_str('abc123', '[0-9]{3}$')",
            "KSR.textops.str_any_in('hello', 'xyz')",
            "KSR.textops.str_all_in('abba', 'ab')",
            "KSR.textops.regex_substring('user=alice;tag=99', 'tag=([0-9]+)', 1, 0, '$var(tag)')",
            "KSR.pv.get('$var(tag)')",
            "KSR.textops.subst_v('abc', '/b/X/', '$var(sv)')",
            "KSR.pv.get('$var(sv)')",
        ],
        tmp_path,
    )
    assert got == [1, -2, -1, 1, 7, -1, 7, 1, -1, 1, -1, 1, 1, -1, 1, 1, "99", 1, "aXc"]


@pytest.mark.parametrize("lang", LANGS)
def test_substitutions_change_the_outgoing_message(lang: str, tmp_path: Path) -> None:
    s = server_with(["textops"])
    ctx = context(s, MSG)
    got = run_exprs(
        s,
        lang,
        [
            "KSR.textops.subst_uri('/^sip:\\\\+49(.*)@/sip:0049\\\\1@/')",
            "KSR.pv.get('$ru')",
            "KSR.textops.subst_user('/0049/0/')",
            "KSR.pv.get('$rU')",
            "KSR.textops.subst('/alpha/gamma/')",
            "KSR.textops.subst('/nomatch/x/')",
            "KSR.textops.subst_body('/10\\\\.0\\\\.0\\\\.1/192.0.2.1/g')",
            "KSR.textops.replace('X-Other: keep', 'X-Other: changed')",
            "KSR.textops.subst_hf('X-Tag', '/beta/BETA/', 'a')",
            "KSR.textops.remove_hf('Privacy')",
            "KSR.pv.get('$hdr(X-Tag)')",
        ],
        tmp_path,
        ctx,
    )
    assert got == [
        1,
        "sip:004930123@example.com;user=phone",
        1,
        "030123",
        1,
        -1,
        1,
        1,
        1,
        1,
        "alpha",
    ]
    out = ctx.apply_lumps()
    assert out.uri == "sip:030123@example.com;user=phone"
    assert out.get_all("x-tag") == ["gamma", "BETA"]
    assert out.get("privacy") is None  # still removable after the whole-message subst
    assert out.get("x-other") == "changed"
    body = out.body.decode()
    assert "192.0.2.1" in body
    assert "10.0.0.1" not in body
    assert out.get("content-length") == str(len(out.body))


@pytest.mark.parametrize("lang", LANGS)
def test_body_and_multipart(lang: str, tmp_path: Path) -> None:
    s = server_with(["textops"])
    multi = sip_request("MESSAGE", extra='Content-Type: multipart/mixed;boundary="b1"', body=MULTI)
    ctx = context(s, multi)
    got = run_exprs(
        s,
        lang,
        [
            "KSR.textops.has_body_type('text/plain')",
            "KSR.textops.get_body_part('text/plain', '$var(p)')",
            "KSR.pv.get('$var(p)')",
            "KSR.textops.get_body_part_raw('application/sdp', '$var(r)')",
            "KSR.pv.get('$var(r)')",
            "KSR.textops.remove_body_part('text/plain')",
            "KSR.textops.append_body_part('<xml/>', 'application/xml')",
            "KSR.textops.remove_body_part('image/png')",
        ],
        tmp_path,
        ctx,
    )
    assert got == [1, 1, "hello", 1, "Content-Type: application/sdp\r\n\r\nv=0", 1, 1, -1]
    out = ctx.apply_lumps()
    assert b"hello" not in out.body
    assert b"<xml/>" in out.body
    assert b"v=0" in out.body
    ctx2 = context(s, multi)
    assert run_exprs(s, lang, ["KSR.textops.filter_body('application/sdp')"], tmp_path, ctx2) == [1]
    out2 = ctx2.apply_lumps()
    assert out2.body == b"v=0"
    assert out2.get("content-type") == "application/sdp"


LUA_REPLY = """
function ksr_request_route()
  KSR.textops.set_reply_body("busy until 5pm", "text/plain")
  KSR.hdr.append_to_reply("X-Why: lunch\\r\\n")
  KSR.sl.sl_send_reply(486, "Busy Here")
end
"""


async def test_set_reply_body_reaches_the_wire(tmp_path: Path) -> None:
    async with running_server(
        make_config(["sl", "textops"]), write_script(tmp_path, LUA_REPLY)
    ) as server:
        peer = await UdpPeer().bind()
        await peer.send(sip_request("INVITE", port=peer.port), udp_addr(server))
        rpl = await peer.recv_reply()
        assert rpl.status == 486
        assert rpl.body == b"busy until 5pm"
        assert rpl.get("content-type") == "text/plain"
        assert rpl.get("x-why") == "lunch"
        peer.close()


@pytest.mark.parametrize("lang", LANGS)
def test_remove_variants(lang: str, tmp_path: Path) -> None:
    s = server_with(["textops"])
    ctx = context(s, MSG)
    got = run_exprs(
        s,
        lang,
        [
            "KSR.textops.remove_hf_idx('X-Tag', -1)",
            "KSR.textops.remove_hf_idx('X-Tag', 5)",
            "KSR.textops.remove_hf_match('X-Other', 'eq', 'KEEP')",
            "KSR.textops.remove_hf_match('X-Other', 'eq', 'no')",
            "KSR.textops.remove_hf_exp('^Priv', '^X-')",
            "KSR.textops.set_body('hello', 'text/plain')",
        ],
        tmp_path,
        ctx,
    )
    assert got == [1, -1, 1, -1, 1, 1]
    out = ctx.apply_lumps()
    assert out.get_all("x-tag") == ["alpha"]
    assert out.get("x-other") is None
    assert out.get("privacy") is None
    assert (out.body, out.get("content-type"), out.get("content-length")) == (
        b"hello",
        "text/plain",
        "5",
    )
