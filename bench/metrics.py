"""What the statistics cost: CPU µs per /metrics answer (prometheus_client against a plain
hand-written text writer of the same samples), per snapshot pushed to other workers, per
histogram observation, per timed route run.

    python -m bench.metrics [--rounds 300]

Runs in one process with every statistics-carrying module loaded (no sockets)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from ksr.core.server import Server
from ksr.core.stats_view import ServerStats, stats_view
from tests.support import make_config, write_script

MODULES = [
    "sl", "tm", "rr", "sanity", "registrar", "usrloc", "dialog", "acc", "xhttp", "xhttp_prom",
    "websocket", "pike", "jsonrpcs", "auth", "maxfwd",
]  # fmt: skip


def cpu_us(fn: Callable[[], object], rounds: int) -> float:
    fn()
    t0 = time.process_time()
    for _ in range(rounds):
        fn()
    return (time.process_time() - t0) / rounds * 1e6


def hand_written(view: ServerStats, prefix: str = "ksr_") -> bytes:
    """The same statistics and histograms as plain text, without the library (for comparison)."""
    out: list[str] = []
    for group in view.groups():
        for name, value in view.items(group):
            full = f"{prefix}{group}_{name}"
            kind = view.kind(group, name)
            if kind == "counter":
                full += "_total"
            out.append(f"# HELP {full} {view.doc(group, name)}")
            out.append(f"# TYPE {full} {kind}")
            out.append(f"{full} {value}")
    for hv in view.histograms.values():
        full = prefix + hv.name
        out.append(f"# HELP {full} {hv.doc}")
        out.append(f"# TYPE {full} histogram")
        for key, (counts, total) in hv.series.items():
            labels = ",".join(f'{n}="{v}"' for n, v in zip(hv.labels, key, strict=True))
            run = 0
            for bound, c in zip([*hv.bounds, "+Inf"], counts, strict=True):
                run += c
                out.append(f'{full}_bucket{{{labels},le="{bound}"}} {run}')
            out.append(f"{full}_sum{{{labels}}} {total}")
            out.append(f"{full}_count{{{labels}}} {run}")
    return ("\n".join(out) + "\n").encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ksr-bench-metrics-"))
    server = Server(
        make_config(MODULES, {}), write_script(tmp, "function ksr_request_route() end", ".lua")
    )
    server.load_script()
    lat = server.latency
    for m in ("INVITE", "BYE", "REGISTER", "OPTIONS", "ACK", "CANCEL"):
        for i in range(50):
            lat.request_done(m, time.time() - i * 0.003)
    for r in ("ksr_request_route", "ksr_reply_route", "failure"):
        lat.route_done(r, 0.0004)
    lat.db.observe(0.001, "sqlite", "get")
    view = stats_view(server)
    prom = server.module("xhttp_prom")
    merged = view.current()
    text = prom.render()
    samples = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
    snap = view.snapshot(full=False)
    payload = zlib.compress(json.dumps(snap, separators=(",", ":")).encode(), 1)
    series = lat.request.child("INVITE")
    rounds = args.rounds
    print(f"samples per answer: {samples}, bytes: {len(text)}")
    print(f"/metrics with prometheus_client: {cpu_us(prom.render, rounds):8.0f} µs")
    print(
        f"same samples hand-written:       {cpu_us(lambda: hand_written(merged), rounds):8.0f} µs"
    )
    print(f"merged view (current()):         {cpu_us(view.current, rounds):8.0f} µs")
    print(
        f"snapshot + json + zlib (a push): {cpu_us(lambda: zlib.compress(json.dumps(view.snapshot(full=False)).encode(), 1), rounds):8.0f} µs, {len(payload)} bytes"
    )
    print(
        f"histogram observe:               {cpu_us(lambda: series.observe(0.01), 100_000):8.2f} µs"
    )
    print(
        f"request_done (clock + observe):  {cpu_us(lambda: lat.request_done('INVITE', 0.0), 100_000):8.2f} µs"
    )


if __name__ == "__main__":
    main()
