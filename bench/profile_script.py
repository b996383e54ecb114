"""What the script engine costs per route run and per KSR call, in one process: a trivial
routing script (Python, app_python3's shape, or Lua) with the anchor's modules loaded, and one
operation repeated ``--count`` times. Meant for instruction counts (load-independent):

    python -m bench.callgrind inproc script --engine python --op reply --count 2000

Operations (``--op``), each on a parsed INVITE's context:

- ``loop``: the bench's loop calling a Python function with run_route's arguments (subtract);
- ``request``: a request route through ``Server.start_route`` (the route returns 1 at once);
- ``reply``: a reply route through ``Server.run_route``;
- ``event``: an event callback with its argument (``run_event``, ``dialog:start``), calling
  ``KSR.dbg`` once;
- ``scriptloop``: one route running an empty loop of ``--count`` turns (subtract from the KSR
  calls below);
- ``pycall``: one route calling a plain module-level Python function ``--count`` times;
- ``ksr0`` ``KSR.is_CANCEL()``, ``ksr2`` ``KSR.sanity.sanity_check(17895, 7)``, ``ksrstr``
  ``KSR.pv.get("$si")``, ``ksrvoid`` ``KSR.setflag(1)``, ``ksrdbg`` ``KSR.dbg("x")`` (debug
  off), ``totag`` ``KSR.siputils.has_totag()``, ``pvru`` ``KSR.pv.get("$ru")``, ``checktr``
  ``KSR.tm.t_check_trans()``: one route making ``--count`` calls.

Per operation: the total / count, minus ``loop`` (route ops) or ``scriptloop`` (KSR calls).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import trio.testing

from ksr.core.context import MsgContext, RouteType
from ksr.core.gcpolicy import tune_for_serving
from ksr.sip.message import parse_message_untrusted

from .anchor_inproc import anchor_setup
from .inproc import cpu_now, make_server, profiled, report, run_trio
from .profile_calls import CALLER, invite

KSR_CALLS = {
    "pycall": "noop()",
    "ksr0": "KSR.is_CANCEL()",
    "ksr2": "KSR.sanity.sanity_check(17895, 7)",
    "ksrstr": 'KSR.pv.get("$si")',
    "ksrvoid": "KSR.setflag(1)",
    "ksrdbg": 'KSR.dbg("x")',
    "totag": "KSR.siputils.has_totag()",
    "pvru": 'KSR.pv.get("$ru")',
    "checktr": "KSR.tm.t_check_trans()",
}

PYTHON = """
import KSR


def noop():
    return 1


class Routes:
    def ksr_request_route(self, msg):
        return 1

    def ksr_reply_route(self, msg):
        return 1

    def ksr_dialog_event(self, msg, evname):
        KSR.dbg("dialog event " + evname + "\\n")
        return 1

    def scriptloop(self, msg):
        for _ in range(COUNT):
            pass
        return 1
%s

def mod_init():
    return Routes()
"""

LUA = """
local function noop() return 1 end
function ksr_request_route() return 1 end
function ksr_reply_route() return 1 end
function ksr_dialog_event(evname) KSR.dbg("dialog event " .. evname .. "\\n") return 1 end
function scriptloop() for _ = 1, COUNT do end return 1 end
%s
"""


def script_text(engine: str, count: int) -> tuple[str, str]:
    if engine == "python":
        routes = "".join(
            f"\n    def {op}(self, msg):\n        for _ in range(COUNT):\n            {call}\n"
            "        return 1\n"
            for op, call in KSR_CALLS.items()
        )
        return (PYTHON % routes).replace("COUNT", str(count)), ".py"
    routes = "".join(
        f"function {op}() for _ = 1, COUNT do {call} end return 1 end\n"
        for op, call in KSR_CALLS.items()
    )
    return (LUA % routes).replace("COUNT", str(count)), ".lua"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--engine", choices=("python", "lua"), default="python")
    ap.add_argument(
        "--op",
        choices=("loop", "request", "reply", "event", "scriptloop", *KSR_CALLS),
        default="reply",
    )
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ksr-script-"))
    _, config = anchor_setup(tmp)
    text, suffix = script_text(args.engine, args.count)
    script = tmp / f"routes{suffix}"
    script.write_text(text)
    server, _, sock = make_server(script, config)
    tune_for_serving(server.config.core.gc_threshold)
    req = parse_message_untrusted(invite(1))
    ctx = MsgContext(server, req, CALLER[0], CALLER[1], sock)  # type: ignore[arg-type]
    op, count = args.op, args.count

    def done(ctx: MsgContext, rc: int) -> None:
        pass

    def nothing(ctx: MsgContext, name: str) -> int:
        return 1

    async def body(_clock: trio.testing.MockClock) -> None:
        run_route = server.run_route
        start_route = server.start_route
        run_event = server.run_event
        for _ in range(50):  # warm
            run_route(ctx, "ksr_reply_route")
            start_route(ctx, "ksr_request_route", done)
        t0 = cpu_now()
        with profiled(args.profile, 30, "tottime"):
            if op == "loop":
                for _ in range(count):
                    nothing(ctx, "ksr_reply_route")
            elif op == "request":
                for _ in range(count):
                    start_route(ctx, "ksr_request_route", done)
            elif op == "reply":
                for _ in range(count):
                    run_route(ctx, "ksr_reply_route")
            elif op == "event":
                for _ in range(count):
                    run_event("ksr_dialog_event", "dialog:start", ctx)
                    ctx.route = RouteType.REQUEST
            else:
                assert run_route(ctx, op) == 1
        report("calls", count, cpu_now() - t0)

    run_trio(server, body)


if __name__ == "__main__":
    main()
