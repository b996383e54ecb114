"""status: a status page for people who would rather look than read (ksr's own module).

Opt-in: load the module and call ``KSR.status.dispatch()`` from the xhttp event route. The page
(``status_path``, default ``/status``) shows the listeners, the script version of every worker
and its recent loads and reloads, registered users, active calls, the last CDRs and a chart of
the request and reply rates of the last minutes that refreshes itself; ``<status_path>.json``
gives the same data. The figures are the whole server's with ``ksr run -n N``
(ksr/core/stats_view.py). See docs/modules/status.md.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from typing import Any

import trio
from pydantic import field_validator

import ksr
from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.stats_view import ServerStats, stats_view
from ksr.kemi.registry import kemi
from ksr.modules.acc.api import AccApi
from ksr.modules.xhttp.api import XhttpApi
from ksr.transport.http import HttpExchange

from .history import RateHistory
from .history import merge as merge_rates
from .page import render_page

TICK = 1.0  # seconds between samples of the counters


class StatusParams(ModParams):
    status_path: str = "/status"  # the page; <status_path>.json the data
    refresh: int = 5  # seconds between refreshes of an open page
    rate_step: int = 5  # seconds per point of the chart
    history: int = 10  # minutes the chart shows
    cdrs: int = 10  # last CDRs shown (acc module)
    reloads: int = 10  # last script loads and reloads shown

    @field_validator("refresh", "rate_step", "history")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be at least 1")
        return v

    @field_validator("status_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with /")
        return v


class Status(Module):
    name = "status"
    Params = StatusParams

    def init(self) -> None:
        self.xhttp = self.optional("xhttp", XhttpApi)
        p = self.params
        self.keep = max(2, p.history * 60 // p.rate_step)
        self.history = RateHistory(p.rate_step, self.keep + 1)
        self.reloads: deque[dict[str, Any]] = deque(maxlen=p.reloads)
        self._engine: Any = None
        self._gen = 0
        stats_view(self.server).section("status", self._section, self._merge)

    async def start(self, nursery: trio.Nursery) -> None:
        stats_view(self.server).start_push()
        self.server.timers.every(TICK, self.tick, name="status", first=0)

    # -- this worker ---------------------------------------------------------------------------
    def _worker(self) -> int:
        h = self.server.handoff
        return h.index if h is not None else 0

    def tick(self) -> None:
        st = self.server.stats
        gen = stats_view(self.server).generation
        if gen != self._gen:
            self._gen = gen
            self.history.rebase()
        sent = (st.value("sl", "sent_replies") or 0) + (st.value("tmx", "rpl_sent") or 0)
        figures = [st.value("core", "rcv_requests") or 0, st.value("core", "rcv_replies") or 0]
        self.history.tick(time.time(), [figures[0], figures[1], sent])  # history.SERIES
        eng = self.server.engine
        if eng is not None and eng is not self._engine:
            self._engine = eng  # a load or a reload swapped the script in
            self.reloads.append(
                {
                    "worker": self._worker(),
                    "version": eng.version,
                    "file": str(eng.path),
                    "at": eng.loaded_at,
                }
            )

    def _section(self) -> dict[str, Any]:
        eng = self.server.engine
        acc = self.optional("acc", AccApi)
        cdrs = acc.recent_cdrs(self.params.cdrs) if acc is not None else []
        script = (
            {
                "worker": self._worker(),
                "file": str(eng.path),
                "language": eng.language,
                "version": eng.version,
                "loaded_at": eng.loaded_at,
            }
            if eng is not None
            else None
        )
        return {
            "rates": self.history.to_json(),
            "cdrs": cdrs,
            "script": script,
            "reloads": list(self.reloads),
        }

    def _merge(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        p = self.params
        cdrs = [c for part in parts for c in part["cdrs"]]
        cdrs.sort(key=lambda c: str(c.get("end_time") or ""), reverse=True)
        reloads = [r for part in parts for r in part["reloads"]]
        reloads.sort(key=lambda r: (r["at"], r["worker"]), reverse=True)
        scripts = sorted((x["script"] for x in parts if x["script"]), key=lambda s: s["worker"])
        return {
            "rates": merge_rates([x["rates"] for x in parts], p.rate_step, self.keep, time.time()),
            "cdrs": cdrs[: p.cdrs],
            "script": scripts,
            "reloads": reloads[: p.reloads],
        }

    # -- the page ------------------------------------------------------------------------------
    def data(self, view: ServerStats) -> dict[str, Any]:
        def fig(group: str, name: str) -> int:
            return view.value(group, name) or 0

        own = view.sections.get("status") or self._merge([self._section()])
        return {
            "now": time.time(),
            "server": {
                "version": f"ksr {ksr.__version__}",
                "uptime": time.time() - self.server.started,
                "pid": os.getpid(),
            },
            "figures": {
                "registered_users": fig("usrloc", "registered_users"),
                "active_calls": fig("dialog", "active_dialogs"),
                "ringing_calls": fig("dialog", "early_dialogs"),
                "transactions": fig("tmx", "active_transactions"),
                "requests": fig("core", "rcv_requests"),
                "workers": view.workers,
            },
            "listeners": [
                {"socket": str(s), "advertised": f"{s.adv_ip}:{s.adv_port}"}
                for s in self.server.listeners
            ],
            **own,
        }

    def _which(self, ctx: MsgContext) -> tuple[HttpExchange | None, str]:
        ex = self.xhttp.exchange(ctx) if self.xhttp is not None else None
        if ex is None:
            return None, ""
        path = ex.target.split("?", 1)[0]
        base = self.params.status_path
        if path == base:
            return ex, "page"
        if path == base + ".json":
            return ex, "json"
        return ex, ""

    @kemi()
    def check_uri(self, ctx: MsgContext) -> int:
        """1 if the HTTP request is for the status page or its data, -1 otherwise."""
        return 1 if self._which(ctx)[1] else -1

    @kemi()
    def dispatch(self, ctx: MsgContext) -> int:
        """Answer the current HTTP request (xhttp:request) if it asks for the status page
        (status_path) or its data (status_path.json): 1; -1 for other URLs (not answered)."""
        ex, what = self._which(ctx)
        if ex is None or not what:
            return -1
        data = self.data(stats_view(self.server).current())
        headers = [("Cache-Control", "no-store")]
        if what == "json":
            body = json.dumps(data).encode()
            headers.append(("Content-Type", "application/json"))
        else:
            body = render_page(self.params.status_path, self.params.refresh, data).encode()
            headers.append(("Content-Type", "text/html; charset=utf-8"))
        return 1 if ex.reply(200, "OK", headers, body) else -1


MODULE = Status
