"""`ksr run -n 2`: a burst of datagrams read in one batch by one worker, half of them owned by
the other worker. Those leave in one hand-off datagram per owner at the end of the batch
(ksr/core/handoff.py ``flush``); every request is answered once, by its owner, in order. The
Call-IDs are in the compact form (``i:``), which the kernel's steering does not read
(ksr/transport/steer.py): otherwise each datagram would reach its owner at once."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from ksr.sip.owner import call_id_owner
from tests.support import ksr_process, write_script
from tests.workers.test_handoff import request, stats

SCRIPT = """
function ksr_request_route()
  KSR.sl.sl_send_reply(200, "pid=" .. KSR.pv.get("$pp") .. " n=" .. KSR.pv.get("$cs"))
  return 1
end
"""
CONFIG = 'loadmodule = ["sl", "jsonrpcs"]\n'
BURST = 150  # more than one batch of the UDP transport (64)


def workers_of(pid: int) -> list[int]:
    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_burst_read_in_one_batch_reaches_each_owner_once(tmp_path: Path) -> None:
    with ksr_process(write_script(tmp_path, SCRIPT), CONFIG, extra_args=["-n", "2"]) as k:
        deadline = time.monotonic() + 15
        while k["log"].read_text().count("listening on") < 2:
            assert time.monotonic() < deadline, k["log"].read_text()
            time.sleep(0.05)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        me = s.getsockname()
        target = ("127.0.0.1", k["port"])
        pids = workers_of(k["proc"].pid)
        assert len(pids) == 2
        sent = {}
        for p in pids:  # both stopped: the burst waits in the kernel, read in full batches
            os.kill(p, signal.SIGSTOP)
        try:
            for i in range(BURST):
                cid = f"burst-{i}-{me[1]}"
                sent[cid] = i + 1
                via = f"SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK-b{i}-{me[1]};rport"
                msg = request("OPTIONS", "sip:x@127.0.0.1", via, cid, i + 1, compact=True)
                s.sendto(msg, target)
        finally:
            for p in pids:
                os.kill(p, signal.SIGCONT)
        answered: dict[str, str] = {}
        for _ in range(BURST):
            data = s.recv(65535)
            head = data.split(b"\r\n", 1)[0].decode()
            cid = next(
                ln.split(":", 1)[1].strip()
                for ln in data.decode().split("\r\n")
                if ln.lower().startswith(("call-id:", "i:"))
            )
            assert cid not in answered, f"{cid} answered twice"
            assert head.endswith(f"n={sent[cid]}"), head
            answered[cid] = head.split("pid=")[1].split()[0]
        by_owner: dict[int, set[str]] = {0: set(), 1: set()}
        for cid, pid in answered.items():
            by_owner[call_id_owner(cid, 2)].add(pid)
        # every request was handled by its owner: one pid per owner, a different one each
        assert all(len(v) == 1 for v in by_owner.values()), by_owner
        assert by_owner[0] != by_owner[1]
        relayed = stats(k["rpc"], "handoff:")
        assert relayed.get("handoff:relayed", 0) >= 1, relayed
