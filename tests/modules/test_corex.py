"""KSR.corex in both engines, and send_data over a real UDP socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kemi.scriptkit import LANGS, context, run_exprs, server_with
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr, write_script


@pytest.mark.parametrize("lang", LANGS)
def test_branches_flags_and_tests(lang: str, tmp_path: Path) -> None:
    s = server_with(["corex"])
    ctx = context(s, sip_request("INVITE", ruri="sip:bob@example.com"))
    f = tmp_path / "data.txt"
    got = run_exprs(
        s,
        lang,
        [
            "KSR.corex.append_branch()",
            "KSR.corex.append_branch_uri('sip:carol@example.com')",
            "KSR.corex.append_branch_uri_q('sip:dave@example.com', '0.5')",
            "KSR.corex.append_branch_uri_q('sip:x@example.com', 'bad')",
            "KSR.pv.get('$bR')",
            "KSR.corex.setxflag(40)",
            "KSR.corex.isxflagset(40)",
            "KSR.corex.resetxflag(40)",
            "KSR.corex.isxflagset(40)",
            "KSR.corex.setxflag(64)",
            "KSR.corex.has_ruri_user()",
            "KSR.corex.has_user_agent()",
            "KSR.corex.is_faked_msg()",
            "KSR.corex.is_socket_name('nope')",
            "KSR.corex.set_source_address('10.9.8.7:5099')",
            "KSR.pv.get('$si')",
            "KSR.pv.get('$sp')",
            "KSR.corex.set_source_address('garbage')",
            "KSR.corex.set_send_socket('udp:9.9.9.9:1')",
            f"KSR.corex.file_write('{f}', 'stored')",
            f"KSR.corex.file_read('{f}')",
            f"KSR.corex.file_read('{tmp_path}/missing')",
        ],
        tmp_path,
        ctx,
    )
    assert got == [
        1,
        1,
        1,
        -1,
        "sip:bob@example.com,sip:carol@example.com,sip:dave@example.com",
        1,
        1,
        1,
        -1,
        -1,
        1,
        -1,
        -1,
        -1,
        1,
        "10.9.8.7",
        5099,
        -1,
        -1,
        1,
        "stored",
        None,
    ]
    assert [b.q for b in ctx.branches] == [-1, -1, 500]


LUA_SEND = """
function ksr_request_route()
  local port = KSR.pv.get("$hdr(X-Port)")
  KSR.pv.seti("$var(rc)", KSR.corex.send_data("sip:127.0.0.1:" .. port, "PING " .. KSR.pv.get("$ci")))
  KSR.pv.seti("$var(fu)", KSR.corex.forward_uac_uri("sip:127.0.0.1:" .. port))
  KSR.sl.sl_send_reply(200, "OK")
end
"""


async def test_send_data_and_forward_uac(tmp_path: Path) -> None:
    async with running_server(
        make_config(["sl", "corex"]), write_script(tmp_path, LUA_SEND)
    ) as server:
        uac, other = await UdpPeer().bind(), await UdpPeer().bind()
        await uac.send(
            sip_request("MESSAGE", port=uac.port, extra=f"X-Port: {other.port}"), udp_addr(server)
        )
        assert await other.recv() == b"PING test-call-1"
        fwd = await other.recv()
        assert fwd.startswith(b"MESSAGE ")
        assert fwd.count(b"\r\nVia:") == 1  # as a UAC: only our Via
        assert (await uac.recv_reply()).status == 200
        assert server.script_vars["rc"] == 1
        assert server.script_vars["fu"] == 1
        uac.close()
        other.close()


LUA_VIA = """
function ksr_request_route()
  local port = KSR.pv.get("$hdr(X-Port)")
  KSR.pv.sets("$xavp(vp=>lb)", "one")
  KSR.pv.sets("$xavp(vp[0]=>zone)", "east")
  KSR.corex.via_add_srvid(1)
  KSR.corex.via_add_xavp_params(1)
  if KSR.pv.get("$hdr(X-Fields)") == "yes" then
    KSR.pv.sets("$xavp(vf=>address)", "edge.example.net")
    KSR.pv.sets("$xavp(vf[0]=>port)", "5999")
    KSR.pv.sets("$xavp(vf[0]=>proto)", "tcp")
    KSR.corex.via_use_xavp_fields(1)
  end
  KSR.forward_uri("sip:127.0.0.1:" .. port)
end
function ksr_reply_route()
  KSR.pv.sets("$xavp(vr=>seen)", "yes")
  KSR.corex.via_reply_add_xavp_params(1)
end
"""


async def test_via_flags_shape_the_via_ksr_adds(tmp_path: Path) -> None:
    """corex via_add_srvid / via_add_xavp_params / via_use_xavp_fields change the Via of the
    forwarded request; via_reply_add_xavp_params in the reply route the Via a reply goes to."""
    config = make_config(
        ["sl", "corex", "pv"],
        server_id=7,
        xavp_via_params="vp",
        xavp_via_fields="vf",
        xavp_via_reply_params="vr",
    )
    async with running_server(config, write_script(tmp_path, LUA_VIA)) as server:
        uac, uas = await UdpPeer().bind(), await UdpPeer().bind()
        extra = f"X-Port: {uas.port}\nX-Fields: yes"
        await uac.send(sip_request("MESSAGE", port=uac.port, extra=extra), udp_addr(server))
        top = (await uas.recv()).split(b"\r\nVia: ", 1)[1].split(b"\r\n", 1)[0].decode()
        assert top.startswith("SIP/2.0/TCP edge.example.net:5999;branch=")
        assert top.endswith(";srvid=7;zone=east;lb=one")

        req = sip_request("MESSAGE", port=uac.port, call_id="c2", extra=f"X-Port: {uas.port}")
        await uac.send(req, udp_addr(server))
        fwd = (await uas.recv()).decode()
        assert ";srvid=7;zone=east;lb=one" in fwd.split("\r\nVia: ", 1)[1].split("\r\n", 1)[0]
        head, _, _ = fwd.partition("\r\n\r\n")
        lines = head.split("\r\n")
        keep = [
            ln
            for ln in lines[1:]
            if ln.split(":", 1)[0] in ("Via", "From", "To", "Call-ID", "CSeq")
        ]
        reply = "\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0"]) + "\r\n\r\n"
        await uas.send(reply, udp_addr(server))
        got = (await uac.recv()).decode()
        vias = [ln for ln in got.split("\r\n") if ln.startswith("Via:")]
        assert len(vias) == 1
        assert vias[0].endswith(";received=127.0.0.1;seen=yes")
        uac.close()
        uas.close()
