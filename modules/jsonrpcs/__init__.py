"""jsonrpcs: JSON-RPC 2.0 control interface (Kamailio's jsonrpcs module).

The datagram transport listens on a unix datagram socket (``dgram_socket``) and answers every
request to the sender's address; ``ksr rpc`` and ``kamcli`` (socket transport) talk to it.
``KSR.jsonrpcs.exec`` runs a command from the routing script; ``KSR.jsonrpcs.dispatch`` answers
a JSON-RPC request that arrived over HTTP (needs the xhttp module).
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import trio

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.pv import pv
from ksr.core.rundir import RUN_SOCKET, server_rpc_socket
from ksr.kemi.registry import XVal, kemi
from ksr.modules.xhttp.api import XhttpApi

from . import jsonfmt
from .dgram import DgramRpcServer, SocketInUse, parse_error_reply

log = logging.getLogger("ksr.jsonrpcs")

TRANSPORT_HTTP = 1
TRANSPORT_FIFO = 2
TRANSPORT_DGRAM = 4
DEFAULT_SOCKET = RUN_SOCKET  # or /tmp/ksr_rpc.sock when /run/ksr is not writable


class JsonrpcsParams(ModParams):
    pretty_format: int = 0
    transport: int = TRANSPORT_FIFO | TRANSPORT_DGRAM  # bit flags; 0 = every transport
    dgram_socket: str = DEFAULT_SOCKET
    dgram_mode: int = 0o660
    dgram_user: int | str = ""
    dgram_group: int | str = ""
    dgram_timeout: int = 2000  # ms to get a reply out
    dgram_workers: int = 1  # accepted for Kamailio configs; ksr serves the socket in one task
    # The FIFO transport is not implemented; its parameters are accepted so Kamailio configs load.
    fifo_name: str = ""
    fifo_mode: int = 0o660
    fifo_group: int | str = ""
    fifo_user: int | str = ""
    fifo_reply_dir: str = "/tmp/"


class Jsonrpcs(Module):
    name = "jsonrpcs"
    Params = JsonrpcsParams

    def init(self) -> None:
        self.xhttp = self.optional("xhttp", XhttpApi)
        self.dgram: DgramRpcServer | None = None
        # the last reply of KSR.jsonrpcs.exec in this worker: $jsonrpl(code/text/body)
        self.last_code = 0
        self.last_text = ""
        self.last_body = ""

    def enabled(self, transport: int) -> bool:
        t = self.params.transport
        return t == 0 or bool(t & transport)

    def socket_path(self) -> str:
        """The dgram_socket setting; a relative unix path is taken from the config's folder."""
        spec = self.params.dgram_socket
        if "dgram_socket" not in self.params.model_fields_set:
            spec = server_rpc_socket()  # $KSR_RPC_SOCKET, /run/ksr or /tmp: as `ksr rpc`
        if spec.startswith("udp:") or spec.startswith("/"):
            return spec
        return str(self.server.config.resolve(spec))

    def render(self, reply: dict[str, Any]) -> str:
        return jsonfmt.dumps(reply, pretty=bool(self.params.pretty_format))

    async def start(self, nursery: trio.Nursery) -> None:
        if self.params.transport & TRANSPORT_FIFO and self.params.fifo_name:
            log.warning("jsonrpcs: the FIFO transport is not implemented in ksr; use dgram_socket")
        if not self.enabled(TRANSPORT_DGRAM) or not self.params.dgram_socket:
            return
        if self.server.worker_id != 0:
            return  # with worker processes only worker 0 serves RPC (docs/modules/jsonrpcs.md)
        srv = DgramRpcServer(
            self.socket_path(),
            self.server.rpc.ahandle,
            self.render,
            mode=self.params.dgram_mode,
            user=self.params.dgram_user,
            group=self.params.dgram_group,
            timeout=self.params.dgram_timeout / 1000,
        )
        try:
            await nursery.start(srv.serve)
        except SocketInUse as err:
            log.error("jsonrpcs: %s; this server runs without its RPC socket", err.strerror)
            return
        self.dgram = srv
        log.info("jsonrpcs: RPC on %s", _describe(srv))

    def stop(self) -> None:
        if self.dgram is not None:
            self.dgram.remove_file()

    # -- KSR.jsonrpcs ------------------------------------------------------------------------------
    def _run(self, doc: str) -> int:
        try:
            request = json.loads(doc)
        except ValueError:
            reply = parse_error_reply()
            rc = -1
        else:
            reply = self.server.rpc.handle(request)
            rc = 1
        err = reply.get("error")
        if isinstance(err, dict):
            self.last_code, self.last_text = int(err.get("code", 500)), str(err.get("message", ""))
        else:
            self.last_code, self.last_text = 200, "OK"
        self.last_body = self.render(reply)
        return rc

    @kemi()
    def exec(self, ctx: MsgContext, cmd: str) -> int:
        """exec(json_doc): run a JSON-RPC command; the reply is in $jsonrpl(code/text/body)."""
        return self._run(cmd)

    @kemi()
    def execx(self, ctx: MsgContext, cmd: str) -> int:
        """Same as exec (Kamailio exports both names)."""
        return self._run(cmd)

    @kemi()
    def response(self, ctx: MsgContext) -> XVal:
        """The body of the last exec reply (a JSON document), or null before any exec."""
        return self.last_body or None

    @kemi()
    def dispatch(self, ctx: MsgContext) -> int:
        """Answer the JSON-RPC request carried by the current HTTP request (xhttp:request event).
        The HTTP status mirrors the JSON-RPC error, 200 OK otherwise. 1 when answered, -1 when
        not (no xhttp, no HTTP request, HTTP not in ``transport``)."""
        xhttp = self.xhttp
        if xhttp is None:
            log.error("jsonrpcs: dispatch() needs the xhttp module")
            return -1
        if not self.enabled(TRANSPORT_HTTP):
            return -1
        body = ctx.msg.body
        self._run(body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or ""))
        sent = xhttp.reply(ctx, self.last_code, self.last_text, "application/json", self.last_body)
        return (
            1 if sent == 0 else -1
        )  # xhttp_reply answers 0 (Kamailio's); 0 here would stop the script

    @pv("jsonrpl")
    def _pv_jsonrpl(self, ctx: MsgContext, arg: str, idx: int | None) -> int | str | None:
        if arg == "code":
            return self.last_code
        if arg == "text":
            return self.last_text
        if arg == "body":
            return self.last_body
        return None


def _describe(srv: DgramRpcServer) -> str:
    if srv.family == socket.AF_UNIX:
        return f"unix:{srv.bound}"
    return f"udp:{srv.bound[0]}:{srv.bound[1]}"


MODULE = Jsonrpcs
