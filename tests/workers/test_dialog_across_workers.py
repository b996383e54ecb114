"""`ksr run -n 2`: a script names a dialog another worker holds (dlg_get_var, dlg_set_var by
Call-ID and tags; dlg_set_timeout_id by ids) and gets the same answer as in that worker: the
route waits while the owner is asked over the hand-off socket (modules/dialog/workers.py)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from ksr.rpc_client import call as rpc_call
from ksr.sip.owner import call_id_owner
from tests.support import ksr_process, write_script

SCRIPT = """
function ksr_request_route()
  if KSR.is_INVITE() then
    KSR.dialog.dlg_manage()
    KSR.pv.sets("$dlg_var(color)", "blue")
    KSR.hdr.append("X-Dlg: " .. KSR.pv.get("$dlg(h_entry)") .. " " .. KSR.pv.get("$dlg(h_id)")
      .. " " .. KSR.pv.get("$pp") .. "\\r\\n")
    KSR.pv.sets("$du", KSR.hdr.get("X-Callee"))
    KSR.tm.t_relay()
    KSR.x.exit()
  end
  if KSR.is_MESSAGE() then
    local c, f, t = KSR.hdr.get("X-C"), KSR.hdr.get("X-F"), KSR.hdr.get("X-T")
    local rc = 1
    local set = KSR.hdr.get("X-Set")
    if set then rc = KSR.dialog.dlg_set_var(c, f, t, "color", set) end
    local ids = KSR.hdr.get("X-Timeout")
    if ids then
      local e, i = string.match(ids, "(%d+) (%d+)")
      rc = KSR.dialog.dlg_set_timeout_id(77, tonumber(e), tonumber(i))
    end
    local v = KSR.dialog.dlg_get_var(c, f, t, "color")
    KSR.sl.sl_send_reply(200, "rc=" .. rc .. " v=" .. (v or "null") .. " pid=" .. KSR.pv.get("$pp"))
    KSR.x.exit()
  end
end
"""

CONFIG = """
loadmodule = ["sl", "tm", "rr", "jsonrpcs", "dialog"]
"""


def _other_owner_call_id(owner: int, prefix: str) -> str:
    """A Call-ID whose owner (of 2 workers) is not ``owner``."""
    n = 0
    while call_id_owner(f"{prefix}-{n}", 2) == owner:
        n += 1
    return f"{prefix}-{n}"


def _request(method: str, port: int, call_id: str, extra: str, me: int) -> bytes:
    return (
        f"{method} sip:bob@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{call_id}-{method}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag1\r\n"
        f"To: <sip:bob@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n"
        f"Contact: <sip:alice@127.0.0.1:{me}>\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def _recv(s: socket.socket, want: bytes) -> bytes:
    while True:
        data = s.recv(65536)
        if want in data:
            return data


def test_dialog_of_another_worker_is_read_and_changed(tmp_path: Path) -> None:
    script = write_script(tmp_path, SCRIPT)
    with ksr_process(script, CONFIG, extra_args=["-n", "2"]) as k:
        log = k["log"]
        deadline = time.monotonic() + 15
        while log.read_text().count("listening on") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        ksr = ("127.0.0.1", k["port"])
        caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (caller, callee):
            s.bind(("127.0.0.1", 0))
            s.settimeout(5)
        me, bob = caller.getsockname()[1], callee.getsockname()[1]
        try:
            call_id = "dlg-across-1"
            owner = call_id_owner(call_id, 2)
            caller.sendto(
                _request("INVITE", bob, call_id, f"X-Callee: sip:127.0.0.1:{bob}\r\n", me), ksr
            )
            invite = _recv(callee, b"INVITE ")
            xdlg = next(ln for ln in invite.decode().split("\r\n") if ln.startswith("X-Dlg:"))
            h_entry, h_id, owner_pid = xdlg.split()[1:4]
            # the callee rings: the dialog has both tags
            head = invite.decode().split("\r\n\r\n")[0].split("\r\n")
            keep = [ln for ln in head if ln.split(":")[0] in ("Via", "From", "Call-ID", "CSeq")]
            to = next(ln for ln in head if ln.startswith("To:"))
            ring = "\r\n".join(
                ["SIP/2.0 180 Ringing", *keep, to + ";tag=ttag1", "Content-Length: 0", "", ""]
            )
            callee.sendto(ring.encode(), ksr)
            _recv(caller, b"180 Ringing")

            tags = f"X-C: {call_id}\r\nX-F: ftag1\r\nX-T: ttag1\r\n"
            elsewhere = _other_owner_call_id(owner, "msg-other")

            def message(cid: str, extra: str = "") -> str:
                caller.sendto(_request("MESSAGE", 5060, cid, tags + extra, me), ksr)
                reply = _recv(caller, cid.encode()).decode()
                return reply.split("\r\n")[0]

            # read from the worker that does not hold the dialog
            line = message(elsewhere)
            assert "rc=1 v=blue" in line, line
            assert f"pid={owner_pid}" not in line  # it ran in the other worker
            # changed from there, seen by the owner
            assert "rc=1 v=green" in message(elsewhere + "-s", "X-Set: green\r\n")
            same = _other_owner_call_id(1 - owner, "msg-same")
            line = message(same)
            assert "v=green" in line, line
            assert f"pid={owner_pid}" in line, line
            # the lifetime set by ids from the other worker
            line = message(elsewhere + "-t", f"X-Timeout: {h_entry} {h_id}\r\n")
            assert "rc=1" in line, line
            listed = rpc_call(
                k["rpc"], {"jsonrpc": "2.0", "method": "dlg.list", "params": [], "id": 1}
            )["result"]
            mine = [d for d in listed if d["call-id"] == call_id]
            assert mine, listed
            assert mine[0]["lifetime"] == 77, mine
            # a dialog nobody holds: null and -1, as with one worker
            tags = "X-C: nobody\r\nX-F: x\r\nX-T: y\r\n"
            assert "rc=-1 v=null" in message(elsewhere + "-n", "X-Set: red\r\n")
        finally:
            caller.close()
            callee.close()
