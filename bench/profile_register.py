"""Where a REGISTER's CPU goes: registrations played through ``Server.receive`` in one process.

Same script and storage as bench/register.py (usrloc db_mode 1, write-through, on SQLite):
with --auth (default) each registration is REGISTER -> 401 -> REGISTER with digest
credentials -> 200, checked against auth_db; with --no-auth it is REGISTER -> 200. Prints CPU
µs per registration (both requests of an authenticated one count as one) and, with
--profile, cProfile's top functions.

--db-mode 0 keeps the location table in memory only (usrloc's default). --script default runs
scripts/default.lua with the stock module list instead of the 10-line script (with auth it sets
WITH_AUTH, whose auth_check wants the From user to be the digest user: each AOR then has its
own account).

--db-url stores the location table (and the digest accounts) elsewhere, e.g.
redis://127.0.0.1:6379/0 or postgres://postgres@127.0.0.1:5432/test (add ?layout=ksr for ksr's
own table layout instead of Kamailio's); the bench uses its own table prefix there and drops
its tables at the end.

--script anchor runs ../shared/anchor's kemi-routing.lua (anchor-py: kemi-routing.py) with its ksr-anchor.toml (no auth
there: it implies --no-auth; usrloc db_mode 0 unless --db-mode says otherwise).

    python -m bench.profile_register [--no-auth] [--db-mode 0|1] [--script minimal|default|anchor|anchor-py]
                                     [--db-url URL] [--count 5000] [--profile]
                                     [--evict BYTES]

--evict BYTES writes that many bytes before every message (cold caches, as bench.profile_calls).
"""

from __future__ import annotations

import argparse
import gc
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import trio.testing

from ksr.core.config import DEFAULT_MODULES, DEFAULT_SCRIPT
from ksr.core.gcpolicy import tune_for_serving
from ksr.sip.digest import compute_ha1, compute_response

from .anchor_inproc import anchor_setup
from .inproc import (
    PROXY,
    ColdCaches,
    GcMeter,
    Wire,
    cpu_now,
    head_lines,
    header_values,
    make_server,
    profiled,
    report,
    run_trio,
)
from .register import SCRIPT as SCRIPT_AUTH  # the scripts bench.register runs over UDP
from .register import SCRIPT_NO_AUTH

UA = ("127.0.0.1", 5090)
USER, PASSWORD = "u00000", "pw0"  # one digest account for every AOR, as sipp's -au/-ap
DOMAIN = "127.0.0.1"


def aor_of(n: int, own_account: bool) -> str:
    """The AOR of registration ``n``: bench000123, or u00123 when each AOR is a digest user."""
    return f"u{n:05d}" if own_account else f"bench{n:06d}"


def register(n: int, cseq: int, authorization: str = "", own_account: bool = False) -> bytes:
    aor = aor_of(n, own_account)
    lines = [
        f"REGISTER sip:{DOMAIN}:{PROXY[1]} SIP/2.0",
        f"Via: SIP/2.0/UDP {UA[0]}:{UA[1]};branch=z9hG4bK-{n}-{cseq}",
        f"From: <sip:{aor}@{DOMAIN}>;tag={n}SIPpTag00",
        f"To: <sip:{aor}@{DOMAIN}>",
        f"Call-ID: {n}-reg@127.0.0.1",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{aor}@{UA[0]}:{UA[1]}>",
    ]
    if authorization:
        lines.append(authorization)
    lines += [
        "Max-Forwards: 70",
        "Expires: 3600",
        "User-Agent: sipp-bench",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def authorization(challenge: bytes, user: str = USER, password: str = PASSWORD) -> str:
    """The Authorization header answering a 401 (MD5, qop=auth when offered)."""
    www = header_values(head_lines(challenge), "www-authenticate")[0].split(":", 1)[1].strip()
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(www)
    }
    realm, nonce = params["realm"], params["nonce"]
    uri = f"sip:{DOMAIN}:{PROXY[1]}"
    ha1 = compute_ha1("MD5", user, realm, password)
    qop = "auth" if "auth" in (params.get("qop") or "").split(",") else None
    cnonce, nc = "0a4f113b", "00000001"
    resp = compute_response("MD5", ha1, nonce, "REGISTER", uri, qop, nc, cnonce)
    auth = f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{resp}", algorithm=MD5'
    if qop:
        auth += f', qop={qop}, nc={nc}, cnonce="{cnonce}"'
    return auth


def status(wire: Wire) -> bytes:
    got = wire.take(UA[1])
    if len(got) != 1:
        raise RuntimeError(f"expected one reply, got {[g[:40] for g in got]}")
    return got[0]


def play(server: Any, wire: Wire, sock: Any, n: int, auth: bool, own_account: bool) -> None:
    rx = server.receive
    rx(register(n, 1, own_account=own_account), UA[0], UA[1], sock)
    first = status(wire)
    if auth:
        if first[8:11] != b"401":
            raise RuntimeError(f"expected 401, got {first[:40]!r}")
        user, password = (aor_of(n, True), f"pw{n}") if own_account else (USER, PASSWORD)
        creds = authorization(first, user, password)
        rx(register(n, 2, creds, own_account), UA[0], UA[1], sock)
        first = status(wire)
    if first[8:11] != b"200":
        raise RuntimeError(f"expected 200, got {first[:60]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--no-auth", dest="auth", action="store_false")
    ap.add_argument("--db-mode", type=int, default=1)
    ap.add_argument(
        "--script", choices=("minimal", "default", "anchor", "anchor-py"), default="minimal"
    )
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--gc-threshold", type=int, default=None)
    ap.add_argument("--db-url", default=None, help="default: an SQLite file in a temp directory")
    ap.add_argument(
        "--evict", type=int, default=0, help="bytes written before every message (cold caches)"
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ksr-prof-"))
    url = f"sqlite://{tmp}/bench.sqlite"
    shared_url = None
    if args.db_url:
        prefix = "p" + uuid.uuid4().hex[:8] + "_"
        shared_url, _, query = args.db_url.partition("?")  # e.g. ?layout=ksr is kept
        url = f"{shared_url}?prefix={prefix}" + (f"&{query}" if query else "")
    if args.script.startswith("anchor"):
        args.auth = False  # the anchor script has no digest auth
    own_account = args.script == "default" and args.auth
    modparam: dict[str, Any] = {"usrloc": {"db_url": url, "db_mode": args.db_mode}}
    config: dict[str, Any] = {"modparam": modparam}
    if args.script.startswith("anchor"):
        script, config = anchor_setup(tmp, python=args.script == "anchor-py", db_mode=args.db_mode)
        modparam = config.setdefault("modparam", {})
        modparam["usrloc"]["db_url"] = url
    elif args.script == "default":
        script = DEFAULT_SCRIPT
        config["loadmodule"] = [m for m in DEFAULT_MODULES if m != "jsonrpcs"]  # no RPC socket
        if args.auth:
            config["core"] = {"defines": {"WITH_AUTH": 1}}
    else:
        script = tmp / "reg.lua"
        script.write_text(SCRIPT_AUTH if args.auth else SCRIPT_NO_AUTH)
        config["loadmodule"] = ["sl", "usrloc", "registrar"] + (
            ["auth", "auth_db"] if args.auth else []
        )
    if args.auth:
        from tests.registrar.procs import add_users

        # u00000 / pw0 for every AOR, or one account per AOR (u00123 / pw123)
        add_users(url, args.warmup + args.count if own_account else 1)
        modparam["auth_db"] = {"db_url": url}
    server, wire, sock = make_server(script, config)
    if args.evict:
        server.receive = ColdCaches(args.evict).wrap(server.receive)  # type: ignore[method-assign]
    tune_for_serving(
        server.config.core.gc_threshold if args.gc_threshold is None else args.gc_threshold
    )

    async def body(clock: trio.testing.MockClock) -> None:
        for i in range(args.warmup):
            play(server, wire, sock, i, args.auth, own_account)
            await trio.sleep(0)
        t0 = cpu_now()
        with profiled(args.profile, args.top, args.sort), GcMeter() as meter:
            for i in range(args.warmup, args.warmup + args.count):
                play(server, wire, sock, i, args.auth, own_account)
                clock.jump(0.0005)
                await trio.sleep(0)
        what = "registrations" + (" (digest auth)" if args.auth else " (no auth)")
        report("registrations", args.count, cpu_now() - t0)
        print(
            f"{what}, {args.script} script, usrloc db_mode {args.db_mode}; garbage collection "
            f"{meter.seconds / args.count * 1e6:.1f} us per registration, gc thresholds {gc.get_threshold()}"
        )

    try:
        run_trio(server, body)
    finally:
        if shared_url is not None:
            from tests.registrar.conftest import _cleanup

            _cleanup(shared_url, prefix)


if __name__ == "__main__":
    main()
