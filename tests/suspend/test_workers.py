"""Routes that wait with worker processes (-n 2): each worker suspends its own routes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.support import ksr_process, sip_request, wait_workers
from tests.suspend.httpserver import HttpServer

LUA = """
function ksr_request_route()
  local url = KSR.hdr.get("X-Url")
  if url then
    local rc = KSR.http_client.query(url, "$var(r)")
    KSR.sl.sl_send_reply(200, "Waited " .. rc)
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(200, "At once")
end
"""


def test_two_workers_each_answer_while_their_routes_wait(tmp_path: Path) -> None:
    script = tmp_path / "route.lua"
    script.write_text(LUA)
    cfg = 'loadmodule = ["sl", "textops", "http_client"]\n'
    with (
        HttpServer() as http,
        ksr_process(script, cfg, extra_args=["-n", "2"], ready=wait_workers(2)) as k,
    ):
        socks = []
        for i in range(8):  # different Call-IDs: both workers get some
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.settimeout(10)
            port = s.getsockname()[1]
            req = sip_request(
                port=port,
                branch=f"z9hG4bK-w{i}",
                call_id=f"w-{i}",
                extra=f"X-Url: {http.url}/slow?ms=3000",
            )
            s.sendto(req.encode(), ("127.0.0.1", k["port"]))
            socks.append(s)
        time.sleep(0.3)
        quick = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        quick.bind(("127.0.0.1", 0))
        quick.settimeout(10)
        for i in range(4):
            q = sip_request(port=quick.getsockname()[1], branch=f"z9hG4bK-q{i}", call_id=f"q-{i}")
            quick.sendto(q.encode(), ("127.0.0.1", k["port"]))
            assert b"200 At once" in quick.recv(65536)
        # every quick OPTIONS came back while the slow ones still waited on the HTTP server
        waiting = 0
        for s in socks:
            s.setblocking(False)
            try:
                s.recv(65536, socket.MSG_PEEK)
            except BlockingIOError:
                waiting += 1
            s.settimeout(10)
        for s in socks:
            assert b"200 Waited 200" in s.recv(65536)
            s.close()
        quick.close()
        assert waiting == len(socks)
        log = Path(k["log"]).read_text()
        assert log.count(" listening on ") >= 2
