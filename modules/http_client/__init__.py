"""http_client: HTTP requests from the routing script (KSR.http_client), Kamailio's names and
return codes, on httpx.

A request made from a request route suspends that route until the answer arrives; the worker
goes on with other messages and timers (docs/suspend.md). Elsewhere (reply and failure routes,
event routes) the call blocks, bounded by ``connection_timeout``.

Return value: the HTTP status (>= 100), or libcurl's error code (< 100: 7 cannot connect,
28 timeout, ...; ``$curlerror(code)`` names it), -1 for bad arguments. The response body goes
into the result variable for 2xx-4xx answers (the first line only for the query functions
when ``query_result`` is 1, the default); it is set to "" otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

import trio
from pydantic import field_validator

from ksr.core.context import MsgContext
from ksr.core.module import ModParams, Module
from ksr.core.pv import pv
from ksr.core.rpc import rpc
from ksr.kemi.registry import kemi
from ksr.suspend import can_suspend, wait

from . import curl_codes
from .conns import Conn, ConnError, parse_conn

log = logging.getLogger("ksr.http_client")


class HttpClientParams(ModParams):
    httpredirect: int = 1
    httpproxy: str = ""
    httpproxyport: int = 0
    useragent: str = "ksr http_client"
    maxdatasize: int = 0
    connection_timeout: int = 4
    timeout_mode: int = 1  # 0 none, 1 seconds, 2 milliseconds
    client_cert: str = ""
    client_key: str = ""
    cacert: str = ""
    cipher_suites: str = ""
    verify_peer: int = 1
    verify_host: int = 2
    tlsversion: int = 0
    authmethod: int = 3
    keep_connections: int = 0
    query_result: int = 1
    query_maxdatasize: int = 0
    httpcon: list[str] = []
    config_file: str = ""
    netinterface: str = ""
    response_headers: int = 0
    # ksr: requests in flight at once (more wait for a connection, within the timeout)
    max_connections: int = 64

    @field_validator("httpcon", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("timeout_mode")
    @classmethod
    def _mode(cls, v: int) -> int:
        if v not in (0, 1, 2):
            raise ValueError("timeout_mode must be 0 (none), 1 (seconds) or 2 (milliseconds)")
        return v


@dataclass(slots=True)
class Req:
    method: str
    url: str
    body: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    timeout: float | None = None
    redirect: bool = True
    oneline: bool = False
    maxdatasize: int = 0
    auth: tuple[str, str] | None = None
    verify: bool = True


@dataclass(slots=True)
class Answer:
    code: int  # HTTP status, or libcurl's error code below 100
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class HttpClient(Module):
    name = "http_client"
    Params = HttpClientParams

    def __init__(self, server: Any, params: HttpClientParams) -> None:
        super().__init__(server, params)
        self.params: HttpClientParams = params
        self.conns: dict[str, Conn] = {}
        for spec in params.httpcon:
            try:
                c = parse_conn(spec)
            except ConnError as err:
                raise server.config.error(
                    str(err), ["modparam", "http_client", "httpcon"]
                ) from None
            self.conns[c.name] = c
        if params.config_file:
            raise server.config.error(
                "http_client config_file is not supported by ksr: define connections with httpcon",
                ["modparam", "http_client", "config_file"],
            )
        self._async: Any = None  # httpx.AsyncClient, made inside the trio run
        self._sync: Any = None  # httpx.Client, for calls that cannot suspend

    def init(self) -> None:
        st = self.server.stats
        st.gauge("httpclient", "connections", lambda: len(self.conns))
        self.c_ok = st.counter("httpclient", "connok")
        self.c_fail = st.counter("httpclient", "connfail")

    def stop(self) -> None:
        if self._sync is not None:
            self._sync.close()
        self._async = self._sync = None

    # -- pseudo-variables -----------------------------------------------------------------------
    @pv("curlerror")
    def _pv_curlerror(self, ctx: MsgContext, arg: str, idx: int | None) -> str:
        try:
            return curl_codes.describe(int(arg))
        except ValueError:
            return curl_codes.describe(-1)

    @pv("httprhdr")
    def _pv_httprhdr(self, ctx: MsgContext, arg: str, idx: int | None) -> str | None:
        hdrs = ctx.extra.get("httprhdr")
        return None if hdrs is None else hdrs.get(arg.lower())

    # -- clients ---------------------------------------------------------------------------------
    def _timeout(self, value: int | None = None) -> float | None:
        p = self.params
        v = p.connection_timeout if value is None else value
        if p.timeout_mode == 0:
            return None
        return v / 1000.0 if p.timeout_mode == 2 else float(v)

    def _ssl(self, verify: bool) -> ssl.SSLContext:
        p = self.params
        ctx = ssl.create_default_context(cafile=p.cacert or None)
        if p.client_cert and p.client_key:
            ctx.load_cert_chain(p.client_cert, p.client_key)
        if p.cipher_suites:
            ctx.set_ciphers(p.cipher_suites)
        if not p.verify_host or not verify:
            ctx.check_hostname = False
        if not verify:
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _client_args(self) -> dict[str, Any]:
        import httpx

        p = self.params
        keep = p.max_connections if p.keep_connections else 0
        args: dict[str, Any] = {
            "limits": httpx.Limits(
                max_connections=p.max_connections, max_keepalive_connections=keep
            ),
            "verify": self._ssl(bool(p.verify_peer)),
            "trust_env": False,
        }
        if p.httpproxy:
            args["proxy"] = f"{p.httpproxy}:{p.httpproxyport}" if p.httpproxyport else p.httpproxy
        return args

    def _request_args(self, req: Req) -> dict[str, Any]:
        headers = [("User-Agent", self.params.useragent), *req.headers]
        args: dict[str, Any] = {
            "headers": headers,
            "timeout": req.timeout,
            "follow_redirects": req.redirect,
        }
        if req.body is not None:
            args["content"] = req.body.encode()
        if req.auth is not None:
            args["auth"] = req.auth
        return args

    async def _send_async(self, req: Req) -> Answer:
        import httpx

        if self._async is None:
            self._async = httpx.AsyncClient(**self._client_args())
        try:
            with trio.fail_after(req.timeout) if req.timeout else contextlib.nullcontext():
                rsp = await self._async.request(req.method, req.url, **self._request_args(req))
        except trio.TooSlowError:
            return Answer(curl_codes.OPERATION_TIMEDOUT)
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            return self._failed(req, err)
        return self._answer(req, rsp.status_code, rsp.text, rsp.headers)

    def _send_sync(self, req: Req) -> Answer:
        import httpx

        if self._sync is None:
            self._sync = httpx.Client(**self._client_args())
        try:
            rsp = self._sync.request(req.method, req.url, **self._request_args(req))
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            return self._failed(req, err)
        return self._answer(req, rsp.status_code, rsp.text, rsp.headers)

    def _failed(self, req: Req, err: Exception) -> Answer:
        code = curl_codes.code_of(err)
        log.warning(
            "http_client: %s %s failed: %s (%d)",
            req.method,
            req.url,
            curl_codes.describe(code),
            code,
        )
        return Answer(code)

    def _answer(self, req: Req, status: int, text: str, headers: Any) -> Answer:
        body = ""
        if 200 <= status < 500 and text:
            if req.oneline and "\n" in text:
                body = text.split("\n", 1)[0]
            elif req.maxdatasize and len(text) > req.maxdatasize:
                body = text[: req.maxdatasize]
            else:
                body = text
        hdrs = {k.lower(): v for k, v in headers.items()} if self.params.response_headers else {}
        return Answer(status, body, hdrs)

    def perform(self, ctx: MsgContext, req: Req) -> Answer:
        """Send ``req``: the route waits (suspends) when it can, else this blocks."""
        if can_suspend():
            try:
                ans: Answer = wait(lambda: self._send_async(req))
            except Exception as err:  # interrupted (stopping)
                log.warning("http_client: %s %s interrupted: %s", req.method, req.url, err)
                ans = Answer(curl_codes.OPERATION_TIMEDOUT)
        else:
            ans = self._send_sync(req)
        if ans.code == 200:
            self.c_ok.inc()
        else:
            self.c_fail.inc()
        if self.params.response_headers:
            ctx.extra["httprhdr"] = ans.headers
        return ans

    # -- building requests -----------------------------------------------------------------------
    def _query_req(self, method: str, url: str, body: str, hdrs: str) -> Req:
        p = self.params
        return Req(
            method,
            url,
            body or None,
            _headers(hdrs),
            self._timeout(),
            bool(p.httpredirect),
            oneline=bool(p.query_result),
            maxdatasize=p.query_maxdatasize,
            verify=bool(p.verify_peer),
        )

    def _writable(self, dpv: str) -> bool:
        c = self.server.pv.compile(dpv)
        if c is None or c.pv.set is None:
            log.error("http_client: target pv is not writable: %s", dpv)
            return False
        return True

    def _query(self, ctx: MsgContext, method: str, url: str, body: str, hdrs: str, dpv: str) -> int:
        if not url:
            log.error("http_client: invalid url parameter")
            return -1
        if not self._writable(dpv):
            return -1
        if not method:
            method = "POST" if body else "GET"
        if (
            method == "POST"
            and body
            and not any(k.lower() == "content-type" for k, _ in _headers(hdrs))
        ):
            hdrs = "Content-Type: application/x-www-form-urlencoded" + (
                "\r\n" + hdrs if hdrs else ""
            )
        ans = self.perform(ctx, self._query_req(method, url, body, hdrs))
        self.server.pv.set(ctx, dpv, ans.body)
        return ans.code if ans.code != 0 else -1

    def _connect(
        self, ctx: MsgContext, con: str, url: str, ctype: str | None, data: str | None, dpv: str
    ) -> int:
        if not self._writable(dpv):
            return -1
        conn = self.conns.get(con)
        if conn is None:
            log.error("http_client: no connection named %s (httpcon)", con)
            return -1
        tried: set[str] = set()
        while True:
            ans = self.perform(ctx, self._conn_req(conn, url, ctype, data))
            failed = ans.code < 100 or ans.code >= 500
            nxt = self.conns.get(conn.failover) if failed and conn.failover else None
            if nxt is None or nxt.name in tried or len(tried) >= 1:
                break
            log.warning(
                "http_client: connection %s failed (%d), trying %s", conn.name, ans.code, nxt.name
            )
            tried.add(conn.name)
            conn = nxt
        self.server.pv.set(ctx, dpv, ans.body)
        return ans.code if ans.code != 0 else -1

    def _conn_req(self, conn: Conn, url: str, ctype: str | None, data: str | None) -> Req:
        p = self.params
        headers = [("Content-Type", ctype or "text/plain")] if data else []
        return Req(
            "POST" if data else "GET",
            conn.url_for(url),
            data or None,
            headers,
            self._timeout(conn.timeout),
            bool(p.httpredirect if conn.httpredirect is None else conn.httpredirect),
            oneline=False,
            maxdatasize=p.maxdatasize if conn.maxdatasize is None else conn.maxdatasize,
            auth=(conn.username, conn.password) if conn.username else None,
        )

    # -- KSR.http_client -----------------------------------------------------------------------
    @kemi(suspends=True)
    def query(self, ctx: MsgContext, url: str, dpv: str) -> int:
        """query(url, result): HTTP GET; the status code (or libcurl's error code below 100),
        the body's first line (query_result) into the result variable."""
        return self._query(ctx, "GET", url, "", "", dpv)

    @kemi(suspends=True)
    def query_post(self, ctx: MsgContext, url: str, post: str, dpv: str) -> int:
        """query_post(url, data, result): HTTP POST of data (GET when data is empty)."""
        return self._query(ctx, "", url, post, "", dpv)

    @kemi(suspends=True)
    def query_post_hdrs(self, ctx: MsgContext, url: str, post: str, hdrs: str, dpv: str) -> int:
        """query_post_hdrs(url, data, hdrs, result): as query_post with extra header lines."""
        return self._query(ctx, "", url, post, hdrs, dpv)

    @kemi(suspends=True)
    def get_hdrs(self, ctx: MsgContext, url: str, body: str, hdrs: str, dpv: str) -> int:
        """get_hdrs(url, body, hdrs, result): HTTP GET with a body and header lines."""
        return self._request(ctx, "GET", url, body, hdrs, dpv)

    @kemi(suspends=True)
    def query_request(
        self, ctx: MsgContext, met: str, url: str, body: str, hdrs: str, dpv: str
    ) -> int:
        """query_request(method, url, body, hdrs, result): any method; the whole body."""
        return self._request(ctx, met, url, body, hdrs, dpv)

    @kemi(suspends=True)
    def query_request_v2pk(
        self, ctx: MsgContext, met: str, url: str, body: str, hdrs: str, dpv: str
    ) -> int:
        """query_request_v2pk(method, url, body, hdrs, result): as query_request (ksr speaks
        HTTP/1.1 here: HTTP/2 with prior knowledge is not supported)."""
        return self._request(ctx, met, url, body, hdrs, dpv)

    def _request(self, ctx: MsgContext, met: str, url: str, body: str, hdrs: str, dpv: str) -> int:
        if not met or not url:
            log.error("http_client: method and url are required")
            return -1
        if not self._writable(dpv):
            return -1
        req = self._query_req(met.upper(), url, body, hdrs)
        req.oneline = False  # the request functions store the whole body
        req.maxdatasize = self.params.maxdatasize
        ans = self.perform(ctx, req)
        self.server.pv.set(ctx, dpv, ans.body)
        return ans.code if ans.code != 0 else -1

    @kemi(suspends=True)
    def curl_connect(self, ctx: MsgContext, con: str, url: str, dpv: str) -> int:
        """curl_connect(connection, url, result): GET on an httpcon connection (url appended
        to its base)."""
        return self._connect(ctx, con, url, None, None, dpv)

    @kemi(suspends=True)
    def curl_connect_post(
        self, ctx: MsgContext, con: str, url: str, ctype: str, data: str, dpv: str
    ) -> int:
        """curl_connect_post(connection, url, content_type, data, result): POST on an httpcon
        connection."""
        return self._connect(ctx, con, url, ctype, data, dpv)

    # -- RPC ---------------------------------------------------------------------------------------
    @rpc("httpclient.listcon")
    def rpc_listcon(self) -> list[dict[str, Any]]:
        """httpclient.listcon: the httpcon connections."""
        return [
            {
                "NAME": c.name,
                "SCHEMA": c.scheme,
                "URI": c.base,
                "USERNAME": c.username,
                "TIMEOUT": c.timeout if c.timeout is not None else self.params.connection_timeout,
                "FAILOVER": c.failover,
            }
            for c in self.conns.values()
        ]


def _headers(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        name, sep, value = line.partition(":")
        if sep and name.strip():
            out.append((name.strip(), value.strip()))
    return out


MODULE = HttpClient
