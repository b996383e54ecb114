"""siptrace's HEPv3 read by decoders nobody here wrote:

- Kamailio's own sipcapture module (Debian's kamailio package) on private ports: over UDP it
  stores each captured message in PostgreSQL with sip_capture() (the row carries the HEP
  addresses, ports, timestamp, capture node:id and the SIP message); over TCP its
  event_route[sipcapture:request] logs the HEP chunks ($hep(0x003) ...);
- the hep-js decoder from npm (installed into a temp folder), over UDP and TCP, and with
  ``ksr run -n 2``: every message copied exactly once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ksr.core.config import DEFAULT_MODULES
from ksr.sip import hep
from tests import services
from tests.support import (
    SCRIPTS,
    UdpPeer,
    free_port,
    ksr_process,
    make_config,
    running_server,
    udp_addr,
    wait_workers,
    write_script,
)

from .test_siptrace import SCRIPT, options

KAMAILIO = "/usr/sbin/kamailio"
KAM_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
CAPTURE_ID = 2001

KAM_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
tcp_children=1
auto_aliases=no
tcp_accept_hep3=yes
tcp_accept_no_cl=yes
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
mpath="{mpath}/"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "db_postgres.so"
loadmodule "sipcapture.so"
modparam("sipcapture", "db_url", "{db_url}")
modparam("sipcapture", "hep_capture_on", 1)
modparam("sipcapture", "capture_on", 1)
modparam("sipcapture", "capture_node", "ksrtest")
modparam("sipcapture", "nonsip_hook", {nonsip})

request_route {{
  sip_capture("{table}");
  drop;
}}
reply_route {{
  sip_capture("{table}");
  drop;
}}
event_route[sipcapture:request] {{
  xlog("L_NOTICE", "HEPTCP ver=$hep(version) fam=$hep(0x001) ipproto=$hep(0x002) src=$hep(0x003) dst=$hep(0x004) sport=$hep(0x007) dport=$hep(0x008) tsec=$hep(0x009) tusec=$hep(0x00a) ptype=$hep(0x00b) capid=$hep(0x00c) len=$(hep(0x00f){{s.len}}) $(hep(0x00f){{line.sw,Call-ID}}) first=$(hep(0x00f){{line.at,0}}{{s.select,0, }})\\n");
  drop;
}}
"""

COLUMNS = (
    "id date micro_ts method reply_reason correlation_id ruri ruri_user ruri_domain from_user "
    "from_domain from_tag to_user to_domain to_tag pid_user contact_user auth_user callid "
    "callid_aleg via_1 via_1_branch cseq diversion reason content_type auth user_agent "
    "source_ip source_port destination_ip destination_port contact_ip contact_port "
    "originator_ip originator_port expires proto family rtp_stat type node msg "
    "custom_field1 custom_field2 custom_field3"
).split()


def _have_kamailio() -> str | None:
    if not Path(KAMAILIO).exists():
        return "kamailio (Debian package) is not installed"
    for mod in ("sipcapture.so", "db_postgres.so", "pv.so", "xlog.so"):
        if not (KAM_MODULES / mod).exists():
            return f"kamailio module {mod} is missing"
    return None


@pytest.fixture(scope="module")
def kam_udp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """sipcapture storing what arrives over UDP (request_route, reply_route: sip_capture)."""
    yield from _sipcapture(tmp_path_factory, nonsip=0)


@pytest.fixture(scope="module")
def kam_tcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """sipcapture logging the HEP chunks of what arrives over TCP (its nonsip hook)."""
    yield from _sipcapture(tmp_path_factory, nonsip=1)


def _sipcapture(tmp_path_factory: pytest.TempPathFactory, nonsip: int) -> Iterator[dict[str, Any]]:
    why = _have_kamailio()
    if why:
        pytest.skip(why)
    import psycopg

    url = services.pg_url()
    table = f"ksr_capture_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(services.psycopg_url(url), autocommit=True)
    conn.execute(f"CREATE TABLE {table} ({', '.join(f'{c} text' for c in COLUMNS)})")
    tmp = tmp_path_factory.mktemp("sipcapture")
    port = free_port()
    cfg = tmp / "kamailio.cfg"
    cfg.write_text(
        KAM_CFG.format(
            port=port, mpath=KAM_MODULES, db_url=url.partition("?")[0], table=table, nonsip=nonsip
        )
    )
    log = tmp / "kamailio.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [KAMAILIO, "-f", str(cfg), "-DD", "-E", "-Y", str(tmp), "-w", str(tmp)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_tcp(port, proc, log)
        yield {"port": port, "table": table, "db": conn, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"kamailio did not start: {log.read_text(errors='replace')[-3000:]}")


async def _send_traced(tmp_path: Path, uri: str, call_id: str) -> tuple[int, tuple[str, int]]:
    """ksr with sip_trace_mode("t"): one OPTIONS in, one 200 out, both copied to ``uri``."""
    cfg = make_config(
        ["sl", "siptrace"],
        {
            "siptrace": {
                "duplicate_uri": uri,
                "hep_mode_on": 1,
                "hep_version": 3,
                "hep_capture_id": CAPTURE_ID,
                "trace_on": 1,
            }
        },
    )
    async with running_server(cfg, write_script(tmp_path, SCRIPT)) as server:
        peer = await UdpPeer().bind()
        await peer.send(options(peer.port, call_id, 1, "t"), udp_addr(server))
        assert (await peer.recv_reply()).status == 200
        await trio.sleep(0.5)  # the TCP copies leave from their own task
        port = peer.port
        peer.close()
        return port, udp_addr(server)


def _rows(db: Any, table: str, call_id: str, want: int) -> list[dict[str, str]]:
    deadline = time.monotonic() + 10
    while True:
        cur = db.execute(f"SELECT * FROM {table} WHERE callid = %s ORDER BY id, date", (call_id,))
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


async def test_kamailio_sipcapture_over_udp(tmp_path: Path, kam_udp: dict[str, Any]) -> None:
    sipcapture = kam_udp
    before = time.time()
    call_id = f"kam-udp-{uuid.uuid4().hex[:8]}"
    port, (ip, sip_port) = await _send_traced(
        tmp_path, f"sip:127.0.0.1:{sipcapture['port']}", call_id
    )
    rows = _rows(sipcapture["db"], sipcapture["table"], call_id, 2)
    # sipcapture stores a reply's status where a request's method goes
    assert sorted((r["method"], r["reply_reason"] or "") for r in rows) == [
        ("200", "OK"),
        ("OPTIONS", ""),
    ], rows
    request = next(r for r in rows if r["method"] == "OPTIONS")
    reply = next(r for r in rows if r["method"] == "200")
    assert (request["source_ip"], request["source_port"]) == ("127.0.0.1", str(port))
    assert (request["destination_ip"], request["destination_port"]) == (ip, str(sip_port))
    assert (reply["source_ip"], reply["source_port"]) == (ip, str(sip_port))
    assert (reply["destination_ip"], reply["destination_port"]) == ("127.0.0.1", str(port))
    for r in rows:
        assert r["node"] == f"ksrtest:{CAPTURE_ID}"
        assert (r["proto"], r["family"]) == ("1", "2")  # Kamailio's PROTO_UDP, AF_INET
        assert before - 1 <= int(r["micro_ts"]) / 1e6 <= time.time() + 1
    msg = bytes.fromhex(request["msg"].removeprefix("\\x"))
    assert msg == options(port, call_id, 1, "t").encode()
    assert bytes.fromhex(reply["msg"].removeprefix("\\x")).startswith(b"SIP/2.0 200 OK\r\n")


async def test_kamailio_sipcapture_over_tcp(tmp_path: Path, kam_tcp: dict[str, Any]) -> None:
    sipcapture = kam_tcp
    before = int(time.time())
    call_id = f"kam-tcp-{uuid.uuid4().hex[:8]}"
    port, (ip, sip_port) = await _send_traced(
        tmp_path, f"sip:127.0.0.1:{sipcapture['port']};transport=tcp", call_id
    )
    deadline = time.monotonic() + 10
    while True:
        text = sipcapture["log"].read_text(errors="replace")
        lines = [x for x in text.splitlines() if "HEPTCP" in x and f"Call-ID: {call_id} " in x]
        if len(lines) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(lines) == 2, text[-3000:]
    fields = [dict(re.findall(r"(\w+)=(\S*)", line.split("HEPTCP", 1)[1])) for line in lines]
    request, reply = sorted(
        fields, key=lambda f: f["src"] != "127.0.0.1" or f["sport"] != str(port)
    )
    assert (request["src"], request["sport"], request["dst"], request["dport"]) == (
        "127.0.0.1",
        str(port),
        ip,
        str(sip_port),
    )
    assert (reply["src"], reply["sport"], reply["dst"], reply["dport"]) == (
        ip,
        str(sip_port),
        "127.0.0.1",
        str(port),
    )
    for f in fields:
        assert (f["ver"], f["fam"], f["ipproto"], f["ptype"]) == ("3", "2", "17", "1")
        assert f["capid"] == str(CAPTURE_ID)
        assert before - 1 <= int(f["tsec"]) <= time.time() + 1
        assert 0 <= int(f["tusec"]) < 1_000_000
        assert f["first"] in ("OPTIONS", "SIP/2.0")
    assert sorted(f["first"] for f in fields) == ["OPTIONS", "SIP/2.0"]
    assert request["first"] == "OPTIONS"
    assert request["len"] == str(len(options(port, call_id, 1, "t")))


# -- hep-js ---------------------------------------------------------------------------------------
HEPJS_SERVER = """
const hep = require("hep-js");
const dgram = require("dgram");
const net = require("net");
function out(via, buf) {
  const d = hep.decapsulate(buf);
  process.stdout.write(JSON.stringify({via: via, rcinfo: d.rcinfo, payload: d.payload}) + "\\n");
}
const u = dgram.createSocket("udp4");
u.on("message", (m) => out("udp", m));
const t = net.createServer((c) => {
  let buf = Buffer.alloc(0);
  c.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 6 && buf.length >= buf.readUInt16BE(4)) {
      const len = buf.readUInt16BE(4);
      out("tcp", buf.subarray(0, len));
      buf = buf.subarray(len);
    }
  });
});
u.bind(0, "127.0.0.1", () => {
  t.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({udp: u.address().port, tcp: t.address().port}) + "\\n");
  });
});
"""


@pytest.fixture(scope="module")
def hepjs() -> Iterator[dict[str, Any]]:
    node, npm = shutil.which("node") or shutil.which("nodejs"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("nodejs/npm are not installed")
    folder = Path(tempfile.gettempdir()) / "ksr-test-hep-js"  # installed once per machine
    if not (folder / "node_modules" / "hep-js").exists():
        folder.mkdir(exist_ok=True)
        res = subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "hep-js"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if res.returncode != 0:
            pytest.skip(f"npm install hep-js failed: {res.stderr[-500:]}")
    script = folder / f"capture-{os.getpid()}.js"
    script.write_text(HEPJS_SERVER)
    proc = subprocess.Popen(
        [node, str(script)], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    ports = json.loads(proc.stdout.readline())
    lines: list[dict[str, Any]] = []

    def collect(n: int, timeout: float = 10) -> list[dict[str, Any]]:
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        deadline = time.monotonic() + timeout
        buf = b""
        while len(lines) < n and time.monotonic() < deadline:
            chunk = proc.stdout.read() or b""
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines.extend(json.loads(x) for x in done if x)
            if not chunk:
                time.sleep(0.05)
        got = list(lines)
        lines.clear()
        return got

    try:
        yield {"udp": ports["udp"], "tcp": ports["tcp"], "collect": collect}
    finally:
        proc.terminate()
        proc.wait(5)
        script.unlink(missing_ok=True)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_hep_js_decodes_the_fields(
    tmp_path: Path, hepjs: dict[str, Any], transport: str
) -> None:
    before = time.time()
    call_id = f"hepjs-{transport}-{uuid.uuid4().hex[:8]}"
    uri = f"sip:127.0.0.1:{hepjs[transport]}" + (";transport=tcp" if transport == "tcp" else "")
    port, (ip, sip_port) = await _send_traced(tmp_path, uri, call_id)
    got = hepjs["collect"](2)
    assert [g["via"] for g in got] == [transport, transport]
    request, reply = got
    r, p = request["rcinfo"], reply["rcinfo"]
    assert (r["srcIp"], r["srcPort"], r["dstIp"], r["dstPort"]) == ("127.0.0.1", port, ip, sip_port)
    assert (p["srcIp"], p["srcPort"], p["dstIp"], p["dstPort"]) == (ip, sip_port, "127.0.0.1", port)
    for info in (r, p):
        assert (info["protocolFamily"], info["protocol"]) == (2, hep.IPPROTO_UDP)
        assert (info["payloadType"], info["captureId"]) == (hep.PROTO_SIP, CAPTURE_ID)
        t = info["timeSeconds"] + info["timeUseconds"] / 1e6
        assert before - 1 <= t <= time.time() + 1
    assert request["payload"] == options(port, call_id, 1, "t")
    assert reply["payload"].startswith("SIP/2.0 200 OK\r\n")
    assert f"Call-ID: {call_id}\r\n" in reply["payload"]


def test_hep_js_with_two_workers_every_message_once(hepjs: dict[str, Any]) -> None:
    """trace_mode 1 with ``-n 2``: a message handed to its owner worker is copied there once."""
    modules = ", ".join(f'"{m}"' for m in [*DEFAULT_MODULES, "siptrace"])
    text = f"""loadmodule = [{modules}]
[modparam.siptrace]
duplicate_uri = "sip:127.0.0.1:{hepjs["udp"]}"
hep_mode_on = 1
hep_version = 3
hep_capture_id = {CAPTURE_ID}
trace_on = 1
trace_mode = 1
"""

    calls = [f"n2-{i}-{uuid.uuid4().hex[:6]}" for i in range(12)]
    with ksr_process(
        SCRIPTS / "default.lua", text, extra_args=["-n", "2"], ready=wait_workers(2)
    ) as k:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        me = s.getsockname()[1]
        for cid in calls:
            req = options(me, cid).replace("sip:ksr@127.0.0.1", f"sip:127.0.0.1:{k['port']}")
            s.sendto(req.encode(), ("127.0.0.1", k["port"]))
            assert s.recv(65535).startswith(b"SIP/2.0 200 ")
        s.close()
        got = hepjs["collect"](2 * len(calls))
        time.sleep(0.3)
        got += hepjs["collect"](0, timeout=0.3)
        assert "Traceback" not in k["log"].read_text()
    seen = [
        (re.search(r"Call-ID: (\S+)", g["payload"]).group(1), g["payload"][:3])  # type: ignore[union-attr]
        for g in got
    ]
    assert sorted(seen) == sorted([(c, "OPT") for c in calls] + [(c, "SIP") for c in calls])
