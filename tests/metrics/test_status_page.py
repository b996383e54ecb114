"""The status page in a real browser: ``ksr run -n 2`` with registrations, calls through ksr
(sipp caller -> ksr -> sipp callee, CDRs by acc) and OPTIONS traffic; headless Chromium loads
/status, and the test reads the DOM it built (the numbers) and the screenshot it took (the
chart's lines drawn in their colours, inside the chart's area)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ksr.rpc_client import call as rpc_call
from tests.support import ksr_process, write_script
from tests.test_calls_sipp import Callee, caller

from .helpers import http_get, samples, send_options
from .png import count_colour, read_png, rows_with_colour

SCRIPT = """
function ksr_request_route()
  if KSR.is_REGISTER() then KSR.registrar.save("location", 0) return 1 end
  if KSR.is_OPTIONS() then KSR.sl.sl_send_reply(200, "OK") return 1 end
  if KSR.is_CANCEL() then
    if KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  if not KSR.is_ACK() and KSR.tm.t_check_trans() == 0 then return 1 end
  if KSR.pv.get("$tt") ~= nil then
    if KSR.rr.loose_route() > 0 then KSR.tm.t_relay() return 1 end
    if KSR.is_ACK() and KSR.tm.t_check_trans() > 0 then KSR.tm.t_relay() end
    return 1
  end
  KSR.hdr.remove("Route")
  if KSR.is_INVITE() then KSR.dialog.dlg_manage() KSR.rr.record_route() end
  KSR.setdsturi("sip:127.0.0.1:%(uas)d")
  KSR.tm.t_relay()
end

function ksr_dialog_event(evname)
  KSR.acc.acc_cdr(evname)
end

function http_event(evname)
  if KSR.status.dispatch() > 0 then return 1 end
  if KSR.xhttp_prom.check_uri() > 0 then KSR.xhttp_prom.dispatch() return 1 end
  KSR.xhttp.xhttp_reply(404, "Not Found", "", "")
end
"""
CONFIG = """
loadmodule = ["sl", "tm", "rr", "dialog", "acc", "usrloc", "registrar", "xhttp", "status", "jsonrpcs",
    "xhttp_prom"]
[modparam.xhttp]
event_callback = "http_event"
[modparam.dialog]
event_callback = "ksr_dialog_event"
[modparam.acc]
db_url = "jsonl://%(dir)s/cdrs.jsonl"
[modparam.status]
rate_step = 1
history = 1
refresh = 1
"""
USERS = 5
CALLS = 3
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1000, 900


def _register(port: int, user: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    me = s.getsockname()[1]
    cid = uuid.uuid4().hex
    msg = (
        f"REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{cid}\r\n"
        f"From: <sip:{user}@127.0.0.1>;tag={cid[:6]}\r\nTo: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: {cid}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{me}>\r\n"
        "Expires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    s.sendto(msg.encode(), ("127.0.0.1", port))
    assert s.recv(65536).startswith(b"SIP/2.0 200")
    s.close()


def _chromium(args: list[str], url: str, profile: Path) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{HEIGHT}",
            "--virtual-time-budget=3000",
            *args,
            url,
        ],
        capture_output=True,
        timeout=90,
    )


@pytest.mark.sipp
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
def test_status_page_renders_in_chromium(tmp_path: Path) -> None:
    callee = Callee("uas_call.xml", "udp", CALLS)
    config = CONFIG % {"dir": tmp_path}
    try:
        with ksr_process(
            write_script(tmp_path, SCRIPT % {"uas": callee.port}), config, extra_args=["-n", "2"]
        ) as k:
            deadline = time.monotonic() + 15
            while k["log"].read_text().count("listening on") < 2:
                assert time.monotonic() < deadline, k["log"].read_text()
                time.sleep(0.05)
            port = k["port"]
            for i in range(USERS):
                _register(port, f"user{i}")
            done = caller("uac_call.xml", port, "bob", "udp", calls=CALLS)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            for _ in range(4):  # traffic over a few chart steps
                send_options(port, 20)
                time.sleep(0.6)
            reloaded = rpc_call(
                k["rpc"], {"jsonrpc": "2.0", "method": "app_lua.reload", "params": [], "id": 1}
            )
            assert reloaded["result"]["new"] == 2
            deadline = time.monotonic() + 10
            while True:  # the other worker's figures arrive within a second
                status, _, body = http_get(port, "/status.json")
                assert status == 200
                data = json.loads(body)
                f = data["figures"]
                if (
                    f["registered_users"] == USERS
                    and len(data["cdrs"]) == CALLS
                    and any(r["version"] == 2 for r in data["reloads"])
                    # the worker serving the page knows its sibling's script version from
                    # the sibling's last report (within a second)
                    and [s["version"] for s in data["script"]][:1] == [2]
                ):
                    break
                assert time.monotonic() < deadline, data
                time.sleep(0.2)
            assert f["workers"] == 2
            assert [s["worker"] for s in data["script"]] == [0, 1]
            # worker 0 answers RPC: it reloaded; the page shows each worker's version
            assert data["script"][0]["version"] == 2
            assert [r["version"] for r in data["reloads"]][0] == 2
            assert sum(p[1] for p in data["rates"]["points"]) > 0
            # request -> final reply latency: tm relayed INVITEs and BYEs, stateless REGISTERs
            m = samples(http_get(port, "/metrics")[2].decode())
            count = "ksr_sip_request_duration_seconds_count"
            assert m[f'{count}{{method="INVITE"}}'] == CALLS
            assert m[f'{count}{{method="BYE"}}'] == CALLS
            assert m[f'{count}{{method="REGISTER"}}'] == USERS
            assert m["ksr_acc_cdrs_total"] == CALLS
            url = f"http://127.0.0.1:{port}/status"
            dom = _chromium(["--dump-dom"], url, tmp_path / "profile1")
            shot = tmp_path / "status.png"
            taken = _chromium([f"--screenshot={shot}"], url, tmp_path / "profile2")
    finally:
        callee.kill()
    html = dom.stdout.decode()
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    # the numbers, as the page's script wrote them into the DOM
    assert f'id="registered_users">{USERS}<' in html
    assert 'id="workers">2<' in html
    assert 'id="active_calls">0<' in html
    assert html.count('data-series="requests"') == 1
    assert html.count("<td>bob</td>") == CALLS  # the CDRs' callee
    assert "caller-bye" in html
    assert "udp:127.0.0.1:" in html  # a listener
    # the picture: the chart's lines were drawn, in the chart's part of the page
    assert taken.returncode == 0, taken.stderr.decode()[-2000:]
    width, height, rows = read_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    blue = rows_with_colour(rows, (0x1F, 0x77, 0xB4))  # requests received, drawn on top
    green = rows_with_colour(rows, (0x2C, 0xA0, 0x2C))  # replies sent
    orange = rows_with_colour(rows, (0xFF, 0x7F, 0x0E))  # replies received (the calls)
    assert count_colour(rows, (0x1F, 0x77, 0xB4)) > 400  # a line across the chart
    assert len(blue) > 10  # that goes up and down with the traffic
    assert len(green) >= 3  # the other lines: at least their legend marks (the
    assert len(orange) >= 3  # requests line covers them where they meet)
    chart_rows = range(min(blue), max(blue) + 1)
    legend_row = max(blue)  # the legend is under the chart
    assert [y for y in orange if y in chart_rows and y != legend_row]  # the calls' replies
