"""Registrations per second with digest auth (or without: --no-auth), per backend, at zero failures.

    python -m bench.register [--backends sqlite,postgres,redis] [--calls 2000] [--rate 400] [--no-auth]
                             [--db-mode 0|1|2|3] [--default-script]

Runs a ksr subprocess (usrloc db_mode 1, write-through, unless --db-mode says otherwise; 0 is
memory only, usrloc's default) with a script doing auth_check + save, and
sipp's REGISTER -> 401 -> REGISTER+auth -> 200 scenario over many AORs from an injection file
(one digest account via -au/-ap: sipp 3.6 cannot read credentials from injection fields).
--default-script runs scripts/default.lua with the stock modules instead (sanity, NAT
detection, tm checks, then save; WITH_AUTH on for auth, whose auth_check wants the From user to
be the digest user, so every registration there is for the one AOR u00000).
Prints the achieved rate, and fails loudly if any registration failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import cpu_seconds
from ksr.core.config import DEFAULT_SCRIPT
from tests.registrar.conftest import PG_URL, REDIS_URL, _cleanup
from tests.registrar.procs import SCENARIO, add_users
from tests.support import free_port, ksr_process, run_sipp

SCRIPT = """
function ksr_request_route()
  if KSR.is_REGISTER() then
    if KSR.auth_db.auth_check(KSR.pv.get("$td"), "subscriber", 0) < 0 then
      KSR.auth.auth_challenge(KSR.pv.get("$td"), 1)
      KSR.x.exit()
    end
    KSR.registrar.save("location", 0)
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(404, "Not Found")
end
"""

SCRIPT_NO_AUTH = """
function ksr_request_route()
  if KSR.is_REGISTER() then
    KSR.registrar.save("location", 0)
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(404, "Not Found")
end
"""
NO_AUTH_SCENARIO = Path(__file__).resolve().parent / "sipp" / "register.xml"


def run_backend(
    name: str,
    calls: int,
    rate: int,
    tmp: Path,
    auth: bool = True,
    db_mode: int = 1,
    default_script: bool = False,
) -> tuple[float, int, int, float]:
    prefix = "b" + uuid.uuid4().hex[:8] + "_"
    url = {
        "sqlite": f"sqlite://{tmp}/{prefix}.sqlite",
        "postgres": f"{PG_URL}?prefix={prefix}",
        "redis": f"{REDIS_URL}?prefix={prefix}",
    }[name]
    add_users(url, 1)  # the digest account u00000 / pw0
    csv = tmp / "aors.csv"
    one_aor = default_script and auth  # default.lua's auth_check: From user = digest user
    aors = ["u00000"] * calls if one_aor else [f"bench{i:06d}" for i in range(calls)]
    csv.write_text("SEQUENTIAL\n" + "".join(f"{aor};127.0.0.1;x\n" for aor in aors))
    usrloc = f'[modparam.usrloc]\ndb_url = "{url}"\ndb_mode = {db_mode}\n'
    if default_script:
        script = DEFAULT_SCRIPT
        cfg = (
            f'{usrloc}[modparam.auth_db]\ndb_url = "{url}"\n'
            f'[modparam.acc]\ndb_url = "jsonl://{tmp}/{prefix}cdrs.jsonl"\n'
        )
        if auth:
            cfg = "[core.defines]\nWITH_AUTH = 1\n" + cfg
    else:
        script = tmp / "bench.lua"
        script.write_text(SCRIPT if auth else SCRIPT_NO_AUTH)
        cfg = (
            'loadmodule = ["sl", "usrloc", "registrar", "auth", "auth_db"]\n'
            f'{usrloc}[modparam.auth_db]\ndb_url = "{url}"\n'
            if auth
            else f'loadmodule = ["sl", "usrloc", "registrar"]\n{usrloc}'
        )
    sipp_auth = ["-au", "u00000", "-ap", "pw0"] if auth else []
    try:
        with ksr_process(script, cfg) as k:
            cpu0 = cpu_seconds(k["proc"].pid)
            t0 = time.monotonic()
            res = run_sipp(
                [
                    "-sf",
                    str(SCENARIO if auth else NO_AUTH_SCENARIO),
                    "-inf",
                    str(csv),
                    f"127.0.0.1:{k['port']}",
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(free_port()),
                    "-m",
                    str(calls),
                    "-r",
                    str(rate),
                    "-l",
                    "200",
                    *sipp_auth,
                    "-recv_timeout",
                    "5000",
                ],
                timeout=120,
            )
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(k["proc"].pid) - cpu0
    finally:
        if name != "sqlite":
            _cleanup(PG_URL if name == "postgres" else REDIS_URL, prefix)
    ok = fail = 0
    for line in res.stdout.splitlines():
        if line.strip().startswith("Successful call"):
            ok = int(line.split("|")[2])
        if line.strip().startswith("Failed call"):
            fail = int(line.split("|")[2])
    return calls / elapsed, ok, fail, cpu / max(ok, 1)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backends", default="sqlite,postgres,redis")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rate", type=int, default=400, help="registrations started per second")
    ap.add_argument(
        "--no-auth", dest="auth", action="store_false", help="REGISTER -> 200, no digest"
    )
    ap.add_argument("--db-mode", type=int, default=1, help="usrloc db_mode (0 = memory only)")
    ap.add_argument("--default-script", action="store_true", help="run scripts/default.lua")
    a = ap.parse_args()
    worst = 0
    with tempfile.TemporaryDirectory(prefix="ksr-bench-") as d:
        for name in a.backends.split(","):
            rps, ok, fail, cpu = run_backend(
                name, a.calls, a.rate, Path(d), a.auth, a.db_mode, a.default_script
            )
            what = "with digest auth" if a.auth else "no auth"
            what += f", db_mode {a.db_mode}, " + ("default.lua" if a.default_script else "10 lines")
            print(
                f"{name:9s} {rps:8.1f} registrations/s ({what})  ok={ok} failed={fail}  "
                f"ksr CPU {cpu * 1e6:.0f} us per registration"
            )
            worst = max(worst, fail)
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
