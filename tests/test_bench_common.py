"""The benchmark runners' server start: ksr with the default script answers the readiness
probe (an OPTIONS keepalive to ksr's own port, so the script sees it as "myself")."""

from __future__ import annotations

import socket

from bench.common import ksr_server
from tests.support import SCRIPTS, sip_request


def test_bench_server_with_the_default_script_is_ready_and_answers() -> None:
    with ksr_server(SCRIPTS / "default.lua") as (port, proc):
        assert proc.poll() is None
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        try:
            ruri = f"sip:127.0.0.1:{port}"
            s.sendto(sip_request("OPTIONS", ruri, s.getsockname()[1]).encode(), ("127.0.0.1", port))
            assert s.recvfrom(65535)[0].startswith(b"SIP/2.0 200 ")
        finally:
            s.close()
