"""Memory under a long run: rounds of calls through tm + rr, ksr's resident memory after each.

Transactions live on for wt_timer after they end; once they are gone the resident size should
stop growing from round to round (a leak shows as steady growth).

    python -m bench.soak [--rounds 6] [--rate 800] [--seconds 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from .calls import CONFIG, SCRIPT, run_calls, with_callee
from .common import ksr_server


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--rate", type=int, default=800)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()

    def soak(uas_port: int) -> None:
        script = Path(tempfile.mkdtemp(prefix="ksr-soak-")) / "calls.lua"
        script.write_text(SCRIPT % uas_port)
        with ksr_server(script, CONFIG) as (port, proc):
            print(f"start: ksr RSS {rss_kib(proc.pid) / 1024:.1f} MiB")
            total = 0
            for n in range(1, args.rounds + 1):
                ok, failed = run_calls(f"127.0.0.1:{port}", args.rate, args.seconds)
                total += ok
                time.sleep(7)  # wt_timer (5 s) lets finished transactions go
                print(
                    f"round {n}: {ok} calls ok, {failed} failed, {total} in all; "
                    f"ksr RSS {rss_kib(proc.pid) / 1024:.1f} MiB",
                    flush=True,
                )

    with_callee(soak)


if __name__ == "__main__":
    main()
