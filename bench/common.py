"""Shared pieces of the benchmark runners: start ksr, run sipp, read CPU time."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import free_port, ksr_process, run_sipp, wait_answering

__all__ = ["count_label", "cpu_seconds", "find_max_rate", "free_port", "ksr_server", "sipp"]

REPO = Path(__file__).resolve().parent.parent
SIPP_DIR = Path(__file__).resolve().parent / "sipp"


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process (and its reaped children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def ksr_server(
    script: Path, config: str = "", extra: list[str] | None = None
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """ksr logging warnings only (the benchmark measures routing, not logging), once its script
    answers; yields (port, process)."""
    args = ["-d", "0", *(extra or [])]
    with ksr_process(script, config, extra_args=args, ready=wait_answering) as k:
        yield k["port"], k["proc"]


def sipp(args: list[str], timeout: float = 120) -> tuple[int, int, str]:
    """Run sipp; returns (successful, failed, output)."""
    try:
        r = run_sipp([*args, "-trace_stat", "-stf", "/dev/null"], timeout)
    except subprocess.TimeoutExpired as err:
        # sipp still had calls in flight when time ran out: ksr fell behind, a failed rate
        out = _text(err.stdout) + _text(err.stderr)
        return count_label(out, "Successful call"), max(1, count_label(out, "Failed call")), out
    out = r.stdout + r.stderr
    ok = count_label(out, "Successful call")
    failed = count_label(out, "Failed call")
    return ok, failed, out


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def count_label(out: str, label: str) -> int:
    """The last total sipp printed for ``label`` (e.g. "Successful call")."""
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
