"""Hot reload costs: time from the reload request to the new script serving, and the latency a
message arriving during a reload sees (the reload runs in the event loop, so that message waits).

    python -m bench.reload [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import trio

from ksr.kemi.reload import reload_script
from tests.support import UdpPeer, make_config, running_server, sip_request, udp_addr

from .common import REPO


def _ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(len(xs) * 0.95))]
    return f"median {statistics.median(xs) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms"


async def measure(script: Path, rounds: int) -> None:
    cfg = make_config()  # the default modules, which the default scripts are written for
    async with running_server(cfg, script) as server:
        peer = await UdpPeer().bind()
        addr = udp_addr(server)

        async def rtt(n: int, reload: bool) -> float:
            t0 = time.perf_counter()
            await peer.send(
                sip_request(
                    ruri=f"sip:{addr[0]}:{addr[1]}",
                    port=peer.port,
                    branch=f"z9hG4bK-b{n}",
                    call_id=f"b{n}",
                ),
                addr,
            )
            if reload:  # the datagram is in the socket buffer while the loop is busy reloading
                reload_script(server, script)
            await peer.recv_reply(timeout=5)
            return time.perf_counter() - t0

        took = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            reload_script(server, script)
            took.append(time.perf_counter() - t0)
        base = [await rtt(i, False) for i in range(rounds * 5)]
        during = [await rtt(10_000 + i, True) for i in range(rounds)]
        peer.close()
    print(f"{script.name}: reload request -> new version serving: {_ms(took)}")
    print(f"{script.name}: OPTIONS round trip, no reload:          {_ms(base)}")
    print(f"{script.name}: OPTIONS round trip, arriving in reload: {_ms(during)}")
    added = statistics.median(during) - statistics.median(base)
    print(f"{script.name}: latency added by a reload (median):     {added * 1000:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    for name in ("default.lua", "default.py"):
        with tempfile.TemporaryDirectory() as tmp:
            # a copy, so helper-module handling sees a private folder
            script = Path(tmp) / name
            script.write_text((REPO / "scripts" / name).read_text())
            trio.run(measure, script, args.rounds)


if __name__ == "__main__":
    main()
