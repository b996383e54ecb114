"""xhttp: HTTP requests on SIP TCP/TLS listeners, answered by the routing script.

Each request (not filtered by ``url_skip``/``url_match``) runs the ``event_callback`` function
with ``"xhttp:request"``. The request is presented as a message, so ``$rm``, ``$hdr(Name)``,
``$rb``, ``$si``, ``$sp`` and ``KSR.is_GET()`` work; the URL is ``$hu``/``KSR.xhttp.get_hu()``.
"""

from __future__ import annotations

import logging
import re

from pydantic import field_validator

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.pv import pv
from ksr.kemi.registry import XVal, kemi
from ksr.transport.hooks import hooks
from ksr.transport.http import HttpExchange

from .api import XhttpApi

log = logging.getLogger("ksr.xhttp")
EVENT = "xhttp:request"
HTTP_KEY = "http"


class XhttpParams(ModParams):
    event_callback: str = ""
    url_skip: str = ""  # regex: matching URLs are not given to the script
    url_match: str = ""  # regex: only matching URLs are given to the script

    @field_validator("url_skip", "url_match")
    @classmethod
    def _regex(cls, v: str) -> str:
        if v:
            re.compile(v)
        return v


class Xhttp(Module):
    name = "xhttp"
    Params = XhttpParams
    events = (EVENT,)

    def api(self) -> XhttpApi:
        return XhttpApi(self)

    @staticmethod
    def exchange(ctx: MsgContext) -> HttpExchange | None:
        """The HTTP request ``ctx`` presents (xhttp's own key: others ask through XhttpApi)."""
        ex = ctx.extra.get(HTTP_KEY)
        return ex if isinstance(ex, HttpExchange) else None

    def init(self) -> None:
        self.skip = re.compile(self.params.url_skip) if self.params.url_skip else None
        self.match = re.compile(self.params.url_match) if self.params.url_match else None
        self.c_requests = self.server.stats.counter(
            "xhttp", "requests", doc="HTTP requests received"
        )
        hooks(self.server).http = self.handle_request

    @pv("hu")
    def _pv_hu(self, ctx: MsgContext, arg: str, idx: int | None) -> str | None:
        return self._url(ctx)

    def _url(self, ctx: MsgContext) -> str | None:
        ex = self.exchange(ctx)
        return ex.target if ex is not None else None

    def handle_request(self, ex: HttpExchange) -> bool:
        """The transports' HTTP hook, for each complete request: False when the script
        failed."""
        self.c_requests.inc()
        if self.skip is not None and self.skip.search(ex.target):
            return True
        if self.match is not None and not self.match.search(ex.target):
            return True
        cb = self.params.event_callback
        if not cb:
            log.error("xhttp: no event_callback set to handle %s %s", ex.method, ex.target)
            return True
        conn = ex.conn
        ctx = MsgContext(
            self.server, ex.as_sip_request(), conn.peer[0], conn.peer[1], conn.local, conn.id
        )
        ctx.extra[HTTP_KEY] = ex
        rc = self.server.run_event(cb, EVENT, ctx)
        if rc == 2:
            log.error("xhttp: event_callback %s() not found in the script", cb)
        return rc != 0

    @kemi()
    def xhttp_reply(self, ctx: MsgContext, code: int, reason: str, ctype: str, body: str) -> int:
        """xhttp_reply(code, reason, content_type, body): answer the HTTP request. Headers added
        with KSR.hdr.append_to_reply go into the reply. Returns 0 on success (as Kamailio), -1
        on error."""
        ex = self.exchange(ctx)
        if ex is None or not 100 <= code <= 999:
            return -1
        headers = [(h.name, h.value) for h in ctx.reply_lumps]
        if ctype:
            headers.append(("Content-Type", ctype))
        server_header = self.server.server_header()
        if server_header:
            headers.append(("Server", server_header))
        data = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)
        return 0 if ex.reply(code, reason or "OK", headers, data) else -1

    @kemi()
    def get_hu(self, ctx: MsgContext) -> XVal:
        """The URL of the HTTP request ($hu), or null outside xhttp:request."""
        return self._url(ctx)


MODULE = Xhttp
