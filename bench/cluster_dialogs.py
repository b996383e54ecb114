"""What sharing dialogs between nodes costs (dialog ``enable_dmq = 1``, docs/cluster.md).

    python -m bench.cluster_dialogs [--calls 100]

Two in-process nodes share one PostgreSQL dialog table and one Redis (a fresh prefix, removed
afterwards); real UDP user agents. For each call set up through node 1 the caller's BYE goes
either to node 1 (the node holding the dialog) or to node 2 (which reads the dialog's rows,
takes it, tells node 1, ends it and relays the BYE): the time from sending the BYE to the callee
receiving it is measured for both, alternately. Then the parts on their own: taking a stored
dialog (``SharedDialogs.lookup``: the read by Call-ID, the write back, the notice) and claiming
its end (the row's delete). Both nodes run in one process and one trio loop.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import trio

from tests.cluster.test_dialog_nodes import SCRIPT, drop_prefix, establish, node_config
from tests.dialog.ua import Ua
from tests.support import running_server, udp_addr, write_script


def summary(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p90 = ms[int(len(ms) * 0.9) - 1] if len(ms) >= 10 else ms[-1]
    return f"{name}: median {statistics.median(ms):.2f} ms, p90 {p90:.2f} ms (n={len(ms)})"


async def bye_latency(a: Ua, b: Ua, to: tuple[str, int]) -> float:
    t0 = time.perf_counter()
    await a.in_dialog("BYE", to)
    bye = await b.expect_request("BYE")
    dt = (time.perf_counter() - t0) * 1000
    await b.answer(bye, 200, to)
    await a.expect_reply(200, "BYE")
    return dt


async def run(calls: int) -> None:
    prefix = f"b{uuid.uuid4().hex[:8]}_"
    from tests import services

    urls = (f"{services.pg_url()}?prefix={prefix}", f"{services.redis_url()}?prefix={prefix}")
    tmp = Path(tempfile.mkdtemp(prefix="ksr-bench-"))
    script = write_script(tmp, SCRIPT)
    a, b = await Ua("alice").start(), await Ua("bob").start()
    try:
        async with (
            running_server(node_config(tmp, 1, *urls), script) as n1,
            running_server(node_config(tmp, 2, *urls), script) as n2,
        ):
            local: list[float] = []
            moved: list[float] = []
            for i in range(calls):
                a.route_set = []
                await establish(a, b, udp_addr(n1), f"bench-{prefix}{i}")
                target = n1 if i % 2 == 0 else n2
                (local if target is n1 else moved).append(await bye_latency(a, b, udp_addr(target)))
            print(summary("BYE through the holding node  ", local))
            print(summary("BYE through another node      ", moved))
            # the parts: take (lookup) and claim, without SIP around them
            s1: Any = n1.module("dialog").shared_dlg
            s2: Any = n2.module("dialog").shared_dlg
            ids = []
            for i in range(calls):
                a.route_set = []
                cid = f"parts-{prefix}{i}"
                await establish(a, b, udp_addr(n1), cid)
                ids.append(cid)
            take: list[float] = []
            claim: list[float] = []
            for cid in ids:
                t0 = time.perf_counter()
                assert s2.lookup(cid)
                take.append((time.perf_counter() - t0) * 1000)
            await trio.sleep(0.5)
            for cid in ids:
                (dlg,) = [d for d in s2.mgr.table if d.callid == cid]
                t0 = time.perf_counter()
                assert s2.claim(dlg)
                claim.append((time.perf_counter() - t0) * 1000)
            print(summary("take a stored dialog (lookup)", take))
            print(summary("claim its end (delete)       ", claim))
            assert s1.c_released.value >= len(ids)
    finally:
        a.close()
        b.close()
        drop_prefix(prefix)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100)
    args = ap.parse_args()
    trio.run(run, args.calls)


if __name__ == "__main__":
    main()
