"""Three ksr processes on 127.0.0.1, 127.0.0.2 and 127.0.0.3 sharing one PostgreSQL (location,
dialogs) and one Redis (the cluster), with real UDP user agents (docs/cluster.md):

* bob registers at node 1, alice calls him through node 2, alice's BYE goes through node 3
  (two worker processes): node 3 matches the dialog, ends it, and the call has one CDR; every
  node counts the call in its profile meanwhile;
* alice calls bob through node 2 again and node 2 is killed (SIGKILL) mid-call: the call still
  ends with one CDR — timed out by the node started again on 127.0.0.2 with node 2's
  server_id (it takes its heartbeat key over at once, so the survivors leave the call to it);
* node 2 is killed mid-call and stays down: a survivor takes the call and times it out.

The CDRs of all nodes go to one JSON-lines file (appends of whole lines)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.rpc_client import call as rpc_call
from tests import services
from tests.dialog.ua import Ua
from tests.registrar.helpers import exchange, register
from tests.support import REPO, free_port, write_script

from .test_dialog_nodes import SHARED_NAME, drop_prefix

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

SCRIPT = """
function ksr_request_route()
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if not KSR.is_ACK() and KSR.tm.t_check_trans() == 0 then return 1 end
  if KSR.is_REGISTER() then
    KSR.registrar.save("location", 0)
    return 1
  end
  if KSR.pv.get("$tt") ~= nil then
    KSR.rr.loose_route()
    if KSR.dialog.is_known_dlg() > 0 then
      KSR.hdr.append("X-Dlg-Account: " .. KSR.dialog.var_gete("account") .. "\\r\\n")
    end
    KSR.tm.t_relay()
    return 1
  end
  if KSR.is_INVITE() then
    KSR.hdr.insert("Record-Route: <sip:cluster.test;lr>\\r\\n")
    KSR.dialog.var_sets("account", "acct-" .. KSR.pv.get("$fU"))
    KSR.dialog.dlg_manage()
    KSR.dialog.set_dlg_profile_static("calls")
    if KSR.registrar.lookup("location") < 0 then
      KSR.sl.sl_send_reply(404, "Not Found")
      return 1
    end
  end
  KSR.tm.t_relay()
end
"""


def node_toml(i: int, port: int, pg: str, redis: str, cdr: Path) -> str:
    return f"""
loadmodule = ["sl", "tm", "rr", "usrloc", "registrar", "dialog", "acc", "jsonrpcs"]

[core]
listen = ["udp:127.0.0.{i}:{port}"]
server_id = {i}
children = {WORKERS[i]}
alias = ["{SHARED_NAME}"]

[cluster]
redis_url = "{redis}"
heartbeat_interval = 0.2
heartbeat_timeout = 1.0

[modparam.usrloc]
db_url = "{pg}"
db_mode = 3

[modparam.dialog]
enable_dmq = 1
db_mode = 1
db_url = "{pg}"
default_timeout = 4
send_bye = 1
profiles_no_value = "calls"

[modparam.acc]
db_url = "jsonl://{cdr}"
cdr_enable = 1
cdr_extra = "account=$dlg_var(account)"
"""


WORKERS = {1: 1, 2: 1, 3: 2}  # node 3 runs two worker processes (docs/workers.md)


class Node:
    def __init__(self, tmp: Path, i: int, port: int, config: str, script: Path) -> None:
        self.i, self.addr = i, (f"127.0.0.{i}", port)
        self.dir = tmp / f"node{i}"
        self.dir.mkdir(exist_ok=True)
        (self.dir / "ksr.toml").write_text(config)
        self.rpc = str(self.dir / "rpc.sock")
        self.log = self.dir / "ksr.log"
        self.script = script
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        cmd = [sys.executable, "-m", "ksr", "run", "--config", str(self.dir / "ksr.toml")]
        cmd += ["--script", str(self.script)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    "KSR_RPC_SOCKET": self.rpc,
                },
            )
        return self

    def wait_ready(self, starts: int = 1) -> None:
        """Until each of its workers logged "listening on" (``starts`` runs of the node)."""
        deadline = time.monotonic() + 30
        while self.log.read_bytes().count(b" listening on ") < starts * WORKERS[self.i]:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.i} exited:\n{self.log.read_text()}")
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def call(self, method: str, *params: Any) -> Any:
        reply = rpc_call(
            self.rpc, {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
        )
        assert "result" in reply, reply
        return reply["result"]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Node]]:
    p = f"t{uuid.uuid4().hex[:8]}_"
    pg, redis = f"{services.pg_url()}?prefix={p}", f"{services.redis_url()}?prefix={p}"
    port = free_port()
    script = write_script(tmp_path, SCRIPT)
    cdr = tmp_path / "cdr.jsonl"
    nodes = [Node(tmp_path, i, port, node_toml(i, port, pg, redis, cdr), script) for i in (1, 2, 3)]
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready()
        yield nodes
    finally:
        for n in nodes:
            n.stop()
        with contextlib.suppress(Exception):
            drop_prefix(p, ("location", "location_attrs"))


def cdrs(tmp: Path, call_id: str) -> list[dict[str, Any]]:
    p = tmp / "cdr.jsonl"
    lines = p.read_text().splitlines() if p.exists() else []
    return [r for r in map(json.loads, lines) if r.get("call_id") == call_id]


async def call(a: Ua, b: Ua, via: Node, call_id: str) -> None:
    await a.invite_via(via.addr, b, call_id, ruri="sip:bob@127.0.0.1")
    inv = await b.expect_request("INVITE", timeout=10)
    await b.answer(inv, 200, via.addr)
    ok = await a.expect_reply(200, timeout=10)
    a.learn_from_2xx(ok)
    await a.in_dialog("ACK", via.addr)
    await b.expect_request("ACK", timeout=10)


def sizes(cluster: list[Node]) -> list[int]:
    return [n.call("dlg.profile_get_size", "calls") for n in cluster]


async def wait_until(pred: Any, limit: float = 10) -> None:
    with trio.fail_after(limit):
        while not pred():
            await trio.sleep(0.1)


async def wait_cdrs(tmp: Path, call_id: str, limit: float = 20) -> list[dict[str, Any]]:
    with trio.fail_after(limit):
        while not cdrs(tmp, call_id):
            await trio.sleep(0.05)
    await trio.sleep(1.0)  # a second CDR, were one to come, would come now
    return cdrs(tmp, call_id)


async def test_register_call_bye_and_kill_across_three_nodes(
    tmp_path: Path, cluster: list[Node]
) -> None:
    n1, n2, n3 = cluster
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        rpl = await exchange(b.peer, n1.addr, register(b.peer.port, "bob", call_id="reg-bob"))
        assert rpl.status == 200
        # call from node 2, BYE through node 3
        first = f"three-{uuid.uuid4().hex[:8]}"
        await call(a, b, n2, first)
        # every node counts the call in its profile (within about a second)
        await wait_until(lambda: sizes(cluster) == [1, 1, 1])
        await a.in_dialog("BYE", n3.addr)
        bye = await b.expect_request("BYE", timeout=10)
        assert bye.get("x-dlg-account") == "acct-alice"  # node 3 knew the dialog's variables
        await b.answer(bye, 200, n3.addr)
        await a.expect_reply(200, "BYE", timeout=10)
        (cdr,) = await wait_cdrs(tmp_path, first)
        assert cdr["end_reason"] == "caller-bye"
        assert cdr["account"] == "acct-alice"
        assert [d["call-id"] for d in n2.call("dlg.list") if d["state"] != 5] == []
        await wait_until(lambda: sizes(cluster) == [0, 0, 0])

        # call from node 2 again; node 2 is killed mid-call and started again on its address
        second = f"three-{uuid.uuid4().hex[:8]}"
        a.route_set, a.cseq = [], 0
        await call(a, b, n2, second)
        n2.stop(signal.SIGKILL)
        n2.start().wait_ready(starts=2)
        for ua in (a, b):  # the dialog times out: BYE to both sides
            bye = await ua.expect_request("BYE", timeout=20)
            assert bye.call_id == second
            await ua.answer(bye, 200, (bye.vias[0].host, bye.vias[0].port or 5060))
        (cdr,) = await wait_cdrs(tmp_path, second)
        assert cdr["end_reason"] == "timeout"
    finally:
        a.close()
        b.close()


def stat(node: Node, name: str) -> int:
    (line,) = node.call("stats.get_statistics", name)
    return int(line.partition(" = ")[2])


async def test_a_killed_nodes_call_is_ended_by_a_survivor(
    tmp_path: Path, cluster: list[Node]
) -> None:
    """Node 2 is killed mid-call and stays down: the cluster's heartbeats declare it dead, one
    survivor takes its dialog and times it out with a BYE to both sides and one CDR."""
    n1, n2, n3 = cluster
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        rpl = await exchange(b.peer, n3.addr, register(b.peer.port, "bob", call_id="reg-bob2"))
        assert rpl.status == 200
        call_id = f"three-{uuid.uuid4().hex[:8]}"
        await call(a, b, n2, call_id)
        n2.stop(signal.SIGKILL)
        for ua in (a, b):
            bye = await ua.expect_request("BYE", timeout=20)
            assert bye.call_id == call_id
            await ua.answer(bye, 200, (bye.vias[0].host, bye.vias[0].port or 5060))
        (cdr,) = await wait_cdrs(tmp_path, call_id)
        assert cdr["end_reason"] == "timeout"
        assert cdr["account"] == "acct-alice"
        assert sorted(stat(n, "dialog:cluster_taken") for n in (n1, n3)) == [0, 1]
    finally:
        a.close()
        b.close()
