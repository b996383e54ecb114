"""Run a routing script offline: the real server, modules and KSR bindings, no sockets.

    h = ScriptHarness("scripts/default.lua", modules=["sl", "tm"], locations={...})
    out = h.request("INVITE", "sip:bob@example.com")
    assert out.code == 100 and out.forwarded.uri == "sip:bob@10.0.0.2:5060"

Messages go in through ``Server.receive`` exactly as from a transport; whatever the server
sends is kept by a capture transport (``ksr.testing.capture``). Modules that need timers (tm,
dialog) run inside ``async with h.running():`` in a trio test (use an autojump MockClock).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import trio

from ksr.core.config import Config
from ksr.core.context import MsgContext, RouteType
from ksr.core.server import Server
from ksr.kemi.reload import reload_script
from ksr.kemi.runs import ABSENT
from ksr.sip.message import Header, Message, Request, parse_message_untrusted

from .capture import CaptureTransport, Sent
from .messages import build_request
from .outcome import Outcome, RouteRun

PROTOS = ("udp", "tcp", "tls", "ws", "wss")


class ScriptHarness:
    """One server with one script, fed messages by the test."""

    def __init__(
        self,
        script: str | Path,
        *,
        modules: list[str] | None = None,
        modparam: Mapping[str, Mapping[str, Any]] | None = None,
        core: Mapping[str, Any] | None = None,
        locations: Mapping[str, str | list[str]] | None = None,
        config: Config | None = None,
        listen: str = "udp:127.0.0.1:5060",
    ) -> None:
        if config is None:
            data: dict[str, Any] = {"core": {"listen": [listen], **dict(core or {})}}
            if modules is not None:
                data["loadmodule"] = list(modules)
            if modparam:
                data["modparam"] = {k: dict(v) for k, v in modparam.items()}
            config = Config.model_validate(data)
        self.server = Server(config, Path(script))
        self.server.load_script()
        self.sent: list[Sent] = []  # everything, including what timers sent later
        self.runs: list[RouteRun] = []
        self.logs: list[logging.LogRecord] = []
        for proto in PROTOS:
            self.server.transports[proto] = CaptureTransport(proto, self.sent)
        self._contexts: list[tuple[MsgContext, list[Header]]] = []
        self.server.request_hooks.append(self._see_request)
        self._observe_routes()
        for aor, contacts in (locations or {}).items():
            for contact in [contacts] if isinstance(contacts, str) else contacts:
                self.add_location(aor, contact)

    # -- setup -----------------------------------------------------------------------------
    def add_location(
        self, aor: str, contact: str, expires: int = 3600, table: str = "location"
    ) -> None:
        """Register ``contact`` for ``aor`` (via the usrloc RPC, as an operator would)."""
        reply = self.server.rpc.handle(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "ul.add",
                "params": [table, aor, contact, expires, -1, ".", 0, 0, 0],
            }
        )
        if reply is None or "error" in reply:
            raise RuntimeError(
                f"cannot add location {aor} -> {contact}: {reply} (is usrloc loaded?)"
            )

    def reload(self, script: str | Path | None = None) -> dict[str, Any]:
        """Swap in a new script version the way ``app_lua.reload`` does."""
        return reload_script(self.server, Path(script) if script else None)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptHarness]:
        """Run timers and module tasks (tm retransmissions, dialog timeouts) in this trio run."""
        async with trio.open_nursery() as nursery:
            self.server.nursery = nursery
            await nursery.start(self.server.timers.run)
            for m in self.server.modules.values():
                await m.start(nursery)
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()
                for m in self.server.modules.values():
                    with contextlib.suppress(Exception):
                        m.stop()

    # -- feeding messages --------------------------------------------------------------------
    def receive(
        self,
        data: bytes | str | Message,
        src: tuple[str, int] = ("127.0.0.1", 5080),
        proto: str = "udp",
    ) -> Outcome:
        """Hand one message to the server as if it arrived from ``src``; what happened."""
        if isinstance(data, Message):
            raw = data.to_bytes()
        elif isinstance(data, str):
            raw = data.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        else:
            raw = data
        sock = next((s for s in self.server.listeners if s.proto == proto), None)
        if sock is None:
            raise ValueError(f"no {proto} listener in the configuration")
        first_sent, first_run, first_ctx = len(self.sent), len(self.runs), len(self._contexts)
        with self._capture_logs() as logs:
            self.server.receive(raw, src[0], src[1], sock)
        try:
            received: Message | None = parse_message_untrusted(raw, datagram=proto == "udp")
        except Exception:
            received = None
        seen = self._contexts[first_ctx:]
        ctx, headers = seen[0] if seen else (None, None)
        return Outcome(
            received=received,
            received_headers=headers
            if headers is not None
            else list(getattr(received, "headers", [])),
            ctx=ctx,
            sent=self.sent[first_sent:],
            runs=self.runs[first_run:],
            logs=logs,
        )

    def request(
        self, method: str = "OPTIONS", ruri: str = "sip:ksr@127.0.0.1", **fields: Any
    ) -> Outcome:
        """Build a request from fields (see ``build_request``) and receive it."""
        proto = str(fields.pop("transport", "udp")).lower()
        src = fields.get("src", ("127.0.0.1", 5080))
        return self.receive(build_request(method, ruri, proto=proto.upper(), **fields), src, proto)

    # -- observers --------------------------------------------------------------------------
    def _see_request(self, ctx: MsgContext) -> bool:
        self._contexts.append((ctx, list(ctx.msg.headers)))
        return False  # observe only: routing goes on

    def _observe_routes(self) -> None:
        server = self.server
        real = server.run_route

        def run_route(ctx: MsgContext, name: str, arg: Any = ABSENT) -> int:
            rc = real(ctx, name, arg)
            args = () if arg is ABSENT else (arg,)
            self.runs.append(RouteRun(name, args, str(ctx.route), rc))
            return rc

        server.run_route = run_route
        real_event = server.run_event

        def run_event(name: str, evname: str, ctx: MsgContext | None = None) -> int:
            # Scripts.run_event runs the callback without the server's run_route (above);
            # no run when there is no message and the script has no such callback
            rc = real_event(name, evname, ctx)
            if ctx is not None or rc != 2:
                self.runs.append(RouteRun(name, (evname,), RouteType.EVENT, rc))
            return rc

        server.run_event = run_event
        real_start = server.start_route

        def start_route(
            ctx: MsgContext, name: str, done: Callable[[MsgContext, int], None]
        ) -> int | None:
            def finished(c: MsgContext, rc: int) -> None:
                self.runs.append(RouteRun(name, (), str(c.route), rc))
                done(c, rc)

            rc = real_start(ctx, name, finished)
            if rc is not None:
                self.runs.append(RouteRun(name, (), str(ctx.route), rc))
            return rc

        server.start_route = start_route

    @contextlib.contextmanager
    def _capture_logs(self) -> Iterator[list[logging.LogRecord]]:
        records: list[logging.LogRecord] = []
        handler = _ListHandler(records)
        logger = logging.getLogger("ksr")
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            yield records
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            self.logs.extend(records)

    @property
    def events(self) -> list[str]:
        """Every event name delivered to the script so far (``dialog:start``, ...)."""
        return [str(r.args[0]) for r in self.runs if r.route == RouteType.EVENT and r.args]


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


__all__ = ["Outcome", "Request", "ScriptHarness"]
