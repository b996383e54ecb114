"""`ksr run -n 2`: every stateful module shows one state whichever worker a message reaches
(docs/workers.md, shared tables). Each request's Call-ID picks the worker that handles it
(``call_ids``), so a write in one worker is read in the other deterministically: htable and
$shv written in one and read in the other, increments from both adding up, pike counting one
source's requests over both workers, a permissions reload done by worker 0 seen by worker 1,
dialogs of both workers listed and ended over RPC and counted in a dialog profile read by
either worker's script, and a worker killed with SIGKILL that comes
back with the state."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ksr.rpc_client import call as rpc_call
from ksr.sip.message import Request, Response
from tests.support import ksr_process, write_script
from tests.workers.test_handoff import answer, call_ids, port_of, recv_until, request, udp

SCRIPT = """
function reply(text)
  KSR.sl.sl_send_reply(200, text .. " pid=" .. KSR.pv.get("$pp"))
end

function ksr_request_route()
  local u = KSR.pv.get("$rU") or ""
  local x = KSR.hdr.get("X-Arg") or ""
  if KSR.is_MESSAGE() then
    if u == "htset" then KSR.htable.sht_sets("t", "k", x) reply("set") return 1 end
    if u == "htget" then reply("got " .. (KSR.htable.sht_get("t", "k") or "null")) return 1 end
    if u == "htinc" then reply("inc " .. KSR.htable.sht_inc("t", "n")) return 1 end
    if u == "shvset" then KSR.pv.sets("$shv(s)", x) reply("set") return 1 end
    if u == "shvget" then reply("got " .. (KSR.pv.get("$shv(s)") or "null")) return 1 end
    if u == "pike" then reply("pike " .. KSR.pike.pike_check_req()) return 1 end
    if u == "perm" then reply("perm " .. KSR.permissions.allow_address(1, x, 5060)) return 1 end
    if u == "calls" then
      KSR.dialog.get_profile_size_static("calls", "$var(n)")
      reply("calls " .. KSR.pv.get("$var(n)"))
      return 1
    end
    KSR.sl.sl_send_reply(404, "Not Found")
    return 1
  end
  if KSR.siputils.has_totag() > 0 then
    if KSR.rr.loose_route() > 0 then KSR.tm.t_relay() return 1 end
    if KSR.is_ACK() and KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if KSR.is_INVITE() then
    KSR.dialog.dlg_manage()
    KSR.dialog.set_dlg_profile_static("calls")
    KSR.rr.record_route()
  end
  KSR.tm.t_relay()
end
"""


def config(tmp: Path) -> str:
    return f"""
loadmodule = ["sl", "tm", "rr", "siputils", "htable", "pike", "permissions", "dialog",
              "jsonrpcs"]
[modparam.htable]
htable = ["t=>size=4;"]
[modparam.pike]
sampling_time_unit = 60
reqs_density_per_unit = 5
[modparam.dialog]
profiles_no_value = "calls"
[modparam.permissions]
address_file = "{tmp / "address.list"}"
"""


@contextmanager
def two_workers(tmp: Path) -> Iterator[dict[str, Any]]:
    (tmp / "address.list").write_text("1 192.0.2.1\n")
    with ksr_process(write_script(tmp, SCRIPT), config(tmp), extra_args=["-n", "2"]) as k:
        deadline = time.monotonic() + 15
        while k["log"].read_text().count("listening on") < 2:
            assert time.monotonic() < deadline, k["log"].read_text()
            time.sleep(0.05)
        yield k


class Client:
    """Sends MESSAGE requests to the worker of our choice (by Call-ID)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = udp()
        self.ids = {w: iter(call_ids(w, 200, f"m{w}")) for w in (0, 1)}
        self.n = 0

    def ask(self, worker: int, user: str, arg: str = "") -> str:
        self.n += 1
        via = f"SIP/2.0/UDP 127.0.0.1:{port_of(self.sock)};branch=z9hG4bK-q{self.n};rport"
        extra = f"X-Arg: {arg}" if arg else ""
        msg = request("MESSAGE", f"sip:{user}@127.0.0.1", via, next(self.ids[worker]), 1, extra)
        self.sock.sendto(msg, ("127.0.0.1", self.port))
        rpl = recv_until(self.sock, "200")
        assert isinstance(rpl, Response)
        text, _, pid = rpl.reason.rpartition(" pid=")
        return f"{text} @{pid}"


def rpc(k: dict[str, Any], method: str, *params: Any) -> Any:
    reply = rpc_call(
        k["rpc"], {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
    )
    assert "result" in reply, reply
    return reply["result"]


def test_htable_shv_pike_and_permissions_are_one_state(tmp_path: Path) -> None:
    with two_workers(tmp_path) as k:
        c = Client(k["port"])
        w0 = c.ask(0, "htset", "v1").split("@")[1]
        w1 = c.ask(1, "htget").split("@")[1]
        assert w0 != w1  # two processes answered
        assert c.ask(1, "htget") == f"got v1 @{w1}"  # written in worker 0, read in worker 1
        c.ask(1, "htset", "v2")
        assert c.ask(0, "htget") == f"got v2 @{w0}"
        c.ask(0, "htset", "5")  # sht_inc on a string item fails; start from an int instead
        for w in (0, 1, 0, 1):
            c.ask(w, "htinc")  # a missing item: created by neither (Kamailio's -255)
        c.ask(1, "shvset", "shared")
        assert c.ask(0, "shvget") == f"got shared @{w0}"

        # pike: 5 requests per unit allowed from one IP; they count over both workers
        got = [c.ask(w, "pike").split(" ")[1] for w in (0, 1, 0, 1, 0, 1, 0)]
        assert got == ["1", "1", "1", "1", "1", "-2", "-1"]
        (hot,) = rpc(k, "pike.top", "HOT")
        assert hot["ip_addr"] == "127.0.0.1"

        # permissions: worker 0 reloads the list (RPC), worker 1 uses the new one at once
        assert c.ask(1, "perm", "192.0.2.9").startswith("perm -1 ")
        (tmp_path / "address.list").write_text("1 192.0.2.1\n1 192.0.2.9\n")
        assert rpc(k, "permissions.addressReload") == "Ok. Reload successful."
        assert c.ask(1, "perm", "192.0.2.9").startswith("perm 1 ")
        assert c.ask(0, "perm", "192.0.2.9").startswith("perm 1 ")


def test_sht_inc_from_both_workers_adds_up(tmp_path: Path) -> None:
    script = SCRIPT.replace(
        'if u == "htinc" then',
        'if u == "htinit" then KSR.htable.sht_seti("t", "n", 0) reply("init") return 1 end\n'
        '    if u == "htinc" then',
    )
    (tmp_path / "address.list").write_text("")
    with ksr_process(write_script(tmp_path, script), config(tmp_path), extra_args=["-n", "2"]) as k:
        deadline = time.monotonic() + 15
        while k["log"].read_text().count("listening on") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        c = Client(k["port"])
        c.ask(0, "htinit")
        values = [int(c.ask(w, "htinc").split(" ")[1]) for w in (0, 1) * 5]
        assert values == list(range(1, 11))


def test_dialogs_of_both_workers_are_listed_and_ended_over_rpc(tmp_path: Path) -> None:
    with two_workers(tmp_path) as k:
        ksr = ("127.0.0.1", k["port"])
        uas = udp()
        calls: list[tuple[socket.socket, Request, str]] = []
        for n, cid in enumerate(call_ids(0, 1, "d") + call_ids(1, 1, "d")):
            caller = udp()
            via = f"SIP/2.0/UDP 127.0.0.1:{port_of(caller)};branch=z9hG4bK-d{n};rport"
            ruri = f"sip:bob@127.0.0.1:{port_of(uas)}"
            me = f"Contact: <sip:alice@127.0.0.1:{port_of(caller)}>"
            caller.sendto(request("INVITE", ruri, via, cid, 1, me), ksr)
            inv = recv_until(uas, "INVITE")
            assert isinstance(inv, Request)
            contact = [("Contact", f"<sip:bob@127.0.0.1:{port_of(uas)}>")]
            answer(uas, inv, 200, contact)
            ok = recv_until(caller, "200")
            ack_via = f"SIP/2.0/UDP 127.0.0.1:{port_of(caller)};branch=z9hG4bK-a{n};rport"
            routes = "\n".join(f"Route: {r}" for r in reversed(ok.get_all("record-route")))
            ack = request("ACK", ruri, ack_via, cid, 1, routes, to_tag=ok.to.tag or "")
            caller.sendto(ack, ksr)
            assert recv_until(uas, "ACK").call_id == cid
            calls.append((caller, inv, cid))
        listed = {d["call-id"]: d for d in rpc(k, "dlg.list")}
        assert set(listed) == {cid for _, _, cid in calls}  # both workers' dialogs
        # the profile counts the calls of both workers, in a script of either worker
        c = Client(k["port"])
        assert c.ask(0, "calls").split(" @")[0] == "calls 2"
        assert c.ask(1, "calls").split(" @")[0] == "calls 2"
        assert rpc(k, "dlg.profile_get_size", "calls") == 2
        for caller, _, cid in calls:
            d = listed[cid]
            assert rpc(k, "dlg.end_dlg", d["h_entry"], d["h_id"]) == "OK"
            bye = recv_until(caller, "BYE")  # ksr hangs up both sides
            assert isinstance(bye, Request)
            assert bye.call_id == cid
        states = {d["call-id"]: d["state"] for d in rpc(k, "dlg.list")}
        assert all(s == 5 for s in states.values()), states
        assert c.ask(1, "calls").split(" @")[0] == "calls 0"
        assert c.ask(0, "calls").split(" @")[0] == "calls 0"


def test_a_killed_worker_comes_back_with_the_shared_state(tmp_path: Path) -> None:
    with two_workers(tmp_path) as k:
        log = k["log"]
        c = Client(k["port"])
        c.ask(0, "htset", "before")
        c.ask(0, "shvset", "kept")
        got = [c.ask(w, "pike").split(" ")[1] for w in (0, 0, 0, 0, 0, 0)]
        assert got[-1] == "-2"  # the source is blocked
        pids = dict(re.findall(r"worker (\d) started \(pid (\d+)\)", log.read_text()))
        os.kill(int(pids["1"]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while log.read_text().count("listening on") < 3:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        assert "state copied from worker 0" in log.read_text()
        new = dict(re.findall(r"worker (\d) started \(pid (\d+)\)", log.read_text()))["1"]
        assert new != pids["1"]
        # the new worker 1 answers from the state it copied
        assert c.ask(1, "htget") == f"got before @{new}"
        assert c.ask(1, "shvget") == f"got kept @{new}"
        assert c.ask(1, "pike") == f"pike -1 @{new}"
