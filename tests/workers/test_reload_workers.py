"""`ksr run -n 2`: a script reload over RPC reaches every worker, so whichever worker a message
reaches it runs the new script; a refused reload leaves every worker on the running one and says
so."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ksr.rpc_client import call as rpc_call
from tests.support import ksr_process, write_script
from tests.workers.test_handoff import call_ids, port_of, request, udp

SCRIPTS = {
    "lua": 'function ksr_request_route()\n  KSR.sl.sl_send_reply(200, "{label}")\nend\n',
    "py": "import KSR\n\nclass R:\n    def ksr_request_route(self, msg):\n"
    "        KSR.sl.sl_send_reply(200, '{label}')\n        return 1\n\n"
    "def mod_init():\n    return R()\n",
}
BROKEN = {"lua": "function ksr_request_route(\n", "py": "def mod_init(:\n"}
METHOD = {"lua": "app_lua.reload", "py": "app_python.reload"}


def answers(port: int, tag: str) -> set[str]:
    """The reason phrases both workers answer with (Call-IDs each worker owns)."""
    seen: set[str] = set()
    s = udp()
    for owner in (0, 1):
        for cid in call_ids(owner, 3, f"{tag}-{owner}"):
            via = f"SIP/2.0/UDP 127.0.0.1:{port_of(s)};branch=z9hG4bK-{cid}"
            s.sendto(request("OPTIONS", "sip:x@127.0.0.1", via, cid, 1), ("127.0.0.1", port))
            reply = s.recv(65535).decode()
            seen.add(reply.split("\r\n")[0].split(" ", 2)[2])
    s.close()
    return seen


@pytest.mark.parametrize("lang", ["lua", "py"])
def test_reload_reaches_every_worker(tmp_path: Path, lang: str) -> None:
    script = write_script(tmp_path, SCRIPTS[lang].format(label="v1"), f".{lang}")
    with ksr_process(script, 'loadmodule = ["sl", "jsonrpcs"]', extra_args=["-n", "2"]) as k:
        deadline = time.monotonic() + 15
        while k["log"].read_text().count("listening on") < 2:
            assert time.monotonic() < deadline, k["log"].read_text()
            time.sleep(0.05)
        assert answers(k["port"], "before") == {"v1"}
        script.write_text(SCRIPTS[lang].format(label="v2"))
        reply = rpc_call(k["rpc"], {"jsonrpc": "2.0", "method": METHOD[lang], "id": 1})
        assert "result" in reply, reply
        assert answers(k["port"], "after") == {"v2"}
        script.write_text(BROKEN[lang])
        refused = rpc_call(k["rpc"], {"jsonrpc": "2.0", "method": METHOD[lang], "id": 2})
        assert "error" in refused, refused
        assert answers(k["port"], "broken") == {"v2"}
