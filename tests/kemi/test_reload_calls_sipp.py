"""Calls keep flowing while the script is reloaded twenty times, broken versions included.

sipp calls bob through ksr (tm + rr) at a steady rate; meanwhile ``app_lua.reload`` arrives
over the real RPC socket every quarter second, every fourth time with a broken script. Every
call must succeed; every good reload must bump the version, every broken one be refused.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ksr.rpc_client import call
from tests.support import free_port, ksr_process, sipp_command

SIPP = Path(__file__).resolve().parent.parent / "sipp"

SCRIPT = """
-- version VERSION
function ksr_request_route()
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return
  end
  if not KSR.is_ACK() and KSR.tm.t_check_trans() == 0 then return end
  if KSR.pv.get("$tt") ~= nil then
    if KSR.rr.loose_route() > 0 then KSR.tm.t_relay() return end
    if KSR.is_ACK() and KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return
  end
  KSR.hdr.remove("Route")
  KSR.rr.record_route()
  KSR.hdr.append("X-Script: VERSION\\r\\n")
  KSR.setdsturi("sip:127.0.0.1:UAS")
  if KSR.tm.t_relay() < 0 then KSR.sl.sl_reply_error() end
end
"""
BROKEN = "function ksr_request_route()\n  KSR.tm.t_relay(\nend\n"
CALLS = 60


@pytest.mark.sipp
def test_twenty_reloads_during_calls(tmp_path: Path) -> None:
    uas_port = free_port()
    script = tmp_path / "route.lua"
    script.write_text(SCRIPT.replace("VERSION", "0").replace("UAS", str(uas_port)))
    config = 'loadmodule = ["sl", "tm", "tmx", "rr", "jsonrpcs"]\n'
    with ksr_process(script, config) as k:
        uas = subprocess.Popen(
            sipp_command(SIPP / "uas_call.xml", port=uas_port, calls=CALLS, timeout=40),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        target = f"127.0.0.1:{k['port']}"
        uac = subprocess.Popen(
            sipp_command(
                SIPP / "uac_call.xml", target, "-s", "bob", "-r", "10", calls=CALLS, timeout=40
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        versions: list[int] = []
        refused = 0
        try:
            for n in range(1, 21):
                time.sleep(0.25)
                broken = n % 4 == 0
                script.write_text(
                    BROKEN
                    if broken
                    else SCRIPT.replace("VERSION", str(n)).replace("UAS", str(uas_port))
                )
                reply = call(k["rpc"], {"jsonrpc": "2.0", "method": "app_lua.reload", "id": n})
                if broken:
                    assert "error" in reply, reply
                    assert "route.lua:3: syntax error" in reply["error"]["message"]
                    refused += 1
                else:
                    assert "result" in reply, reply
                    versions.append(int(reply["result"]["new"]))
            out, _ = uac.communicate(timeout=60)
        finally:
            for p in (uac, uas):
                if p.poll() is None:
                    p.kill()
            uas.wait()
        assert uac.returncode == 0, out[-3000:]
        assert refused == 5
        assert versions == sorted(versions)
        assert len(set(versions)) == 15
        listing = call(k["rpc"], {"jsonrpc": "2.0", "method": "app_lua.list", "id": 99})
        assert str(versions[-1]) in str(listing["result"])
