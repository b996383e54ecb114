"""nathelper and siputils return codes checked against Kamailio 5.6's sources, one call per
case through a real script (Lua and Python alike). Kamailio's WebSocket example
(``if (!add_contact_alias()) { sl_send_reply(400) }``) relies on 2 for a request without
Contact (an ACK, many BYEs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksr.testing import ScriptHarness

LUA = """
function ksr_request_route()
  local rc = KSR.x.modf("unused")
  local call = KSR.hdr.get("X-Call")
  if call == "add_contact_alias" then rc = KSR.nathelper.add_contact_alias()
  elseif call == "add_rcv_param" then rc = KSR.nathelper.add_rcv_param(1)
  elseif call == "fix_nated_sdp" then rc = KSR.nathelper.fix_nated_sdp(tonumber(KSR.hdr.get("X-Arg")))
  elseif call == "is_first_hop" then rc = KSR.siputils.is_first_hop()
  end
  KSR.sl.sl_send_reply(200, "rc=" .. rc)
end
"""

PY = """
import KSR

class R:
    def ksr_request_route(self, msg):
        call = KSR.hdr.get("X-Call")
        rc = -99
        if call == "add_contact_alias":
            rc = KSR.nathelper.add_contact_alias()
        elif call == "add_rcv_param":
            rc = KSR.nathelper.add_rcv_param(1)
        elif call == "fix_nated_sdp":
            rc = KSR.nathelper.fix_nated_sdp(int(KSR.hdr.get("X-Arg")))
        elif call == "is_first_hop":
            rc = KSR.siputils.is_first_hop()
        KSR.sl.sl_send_reply(200, "rc=%d" % rc)
        return 1

def mod_init():
    return R()
"""

SDP = "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


@pytest.fixture(params=[(".lua", LUA), (".py", PY)], ids=["lua", "python"])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> ScriptHarness:
    suffix, text = request.param
    script = tmp_path / f"route{suffix}"
    script.write_text(text)
    return ScriptHarness(
        script,
        modules=["sl", "nathelper", "siputils", "textops"],
        core={"listen": ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]},
    )


def rc(h: ScriptHarness, call: str, method: str = "INVITE", **kw: object) -> str:
    headers = [("X-Call", call), *kw.pop("headers", [])]  # type: ignore[misc]
    out = h.request(method, "sip:bob@127.0.0.1", headers=headers, **kw)  # type: ignore[arg-type]
    assert out.code == 200, out
    return out.reason


def test_add_contact_alias(h: ScriptHarness) -> None:
    # no Contact (an ACK, a BYE): 2, nothing to do
    assert rc(h, "add_contact_alias", "MESSAGE", contact=None) == "rc=2"
    assert rc(h, "add_contact_alias", "BYE", contact=None) == "rc=2"
    # the Contact is the source address: 2; another address: alias added, 1
    assert rc(h, "add_contact_alias", contact="<sip:alice@127.0.0.1:5080>") == "rc=2"
    assert rc(h, "add_contact_alias", contact="<sip:alice@192.168.1.5:5060>") == "rc=1"
    # a Contact that cannot carry an alias (*): an error
    assert rc(h, "add_contact_alias", "REGISTER", contact="*") == "rc=-1"


def test_add_rcv_param_as_uri_parameter_only_for_udp(h: ScriptHarness) -> None:
    assert rc(h, "add_rcv_param", "REGISTER") == "rc=1"
    assert rc(h, "add_rcv_param", "REGISTER", transport="tcp") == "rc=-1"


def test_fix_nated_sdp_counts_changed_addresses(h: ScriptHarness) -> None:
    ctype = "application/sdp"
    private = SDP.format(ip="192.168.1.10")
    same = SDP.format(ip="127.0.0.1")  # the source address already
    arg = [("X-Arg", "10")]
    assert rc(h, "fix_nated_sdp", headers=arg, body=private, content_type=ctype) == "rc=1"
    assert rc(h, "fix_nated_sdp", headers=arg, body=same, content_type=ctype) == "rc=2"
    # only a=direction added: no address changed, 2 (Kamailio counts c=/o= changes)
    one = [("X-Arg", "1")]
    assert rc(h, "fix_nated_sdp", headers=one, body=private, content_type=ctype) == "rc=2"
    assert rc(h, "fix_nated_sdp", headers=arg) == "rc=-1"  # no SDP body


def test_is_first_hop(h: ScriptHarness) -> None:
    assert rc(h, "is_first_hop") == "rc=1"
    two_vias = [("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-below")]
    assert rc(h, "is_first_hop", headers=two_vias) == "rc=-1"
    # a request's Record-Route does not matter (Kamailio looks at it only for replies)
    rr = [("Record-Route", "<sip:192.0.2.9;lr>")]
    assert rc(h, "is_first_hop", headers=rr) == "rc=1"
