"""Shared pieces of the benchmark runners: start ksr, run sipp, read CPU time."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIPP_DIR = Path(__file__).resolve().parent / "sipp"


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process (and its reaped children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def ksr_server(script: Path, config: str = "", port: int | None = None, extra: list[str] | None = None) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = port or free_port()
    tmp = Path(tempfile.mkdtemp(prefix="ksr-bench-"))
    cfg = tmp / "ksr.toml"
    cfg.write_text(config)
    log = tmp / "ksr.log"
    args = [sys.executable, "-m", "ksr", "run", "--config", str(cfg), "--script", str(script),
            "--listen", f"udp:127.0.0.1:{port}", "-d", "0", *(extra or [])]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=str(tmp))
    try:
        wait_ready(port, proc, log)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Send OPTIONS until anything answers (any reply means the script is serving)."""
    probe = (
        "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe{n};rport\r\n"
        "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: probe{n}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    deadline = time.time() + 20
    n = 0
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ksr exited:\n{log.read_text()}")
            n += 1
            s.sendto(probe.format(n=n).encode(), ("127.0.0.1", port))
            try:
                s.recvfrom(65535)
                return
            except TimeoutError:
                continue
        raise RuntimeError(f"ksr did not answer:\n{log.read_text()}")
    finally:
        s.close()


def sipp(args: list[str], timeout: float = 120) -> tuple[int, int, str]:
    """Run sipp; returns (successful, failed, output)."""
    r = subprocess.run(["sipp", *args, "-nostdin", "-timeout", f"{int(timeout)}s", "-trace_stat", "-stf", "/dev/null"],
                       capture_output=True, text=True, timeout=timeout + 30)
    out = r.stdout + r.stderr
    ok = _count(out, "Successful call")
    failed = _count(out, "Failed call")
    return ok, failed, out


def _count(out: str, label: str) -> int:
    m = re.findall(rf"{label}\s*\|\s*\d+\s*\|\s*(\d+)", out)
    return int(m[-1]) if m else 0


def find_max_rate(
    run_at: Callable[[int], tuple[int, int]], rates: list[int]
) -> tuple[int, list[tuple[int, int, int]]]:
    """Try rates in order; the best one with zero failures and all calls done."""
    best = 0
    results = []
    for rate in rates:
        ok, failed = run_at(rate)
        results.append((rate, ok, failed))
        print(f"  rate {rate:>6}/s: {ok} ok, {failed} failed", flush=True)
        if failed == 0 and ok > 0:
            best = rate
        else:
            break
    return best, results
