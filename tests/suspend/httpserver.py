"""A small HTTP/1.1 server for the http_client tests, on its own trio loop in a thread (so a
worker that blocked its loop could not stall it).

Paths: ``/ok`` two lines; ``/echo`` the method, body and X-Token header; ``/slow?ms=N`` answers
after N ms; ``/404``; ``/500``; ``/hdr`` sets ``X-Answer: 42``; ``/json`` a route decision.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio


class HttpServer:
    def __init__(self) -> None:
        self.port = 0
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HttpServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(10)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as n:
            n.start_soon(trio.serve_listeners, self._handle, listeners)
            self._ready.set()
            await self._stop.wait()
            n.cancel_scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                hdrs = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                n = int(hdrs.get("content-length", "0"))
                while len(buf) < n:
                    buf += await stream.receive_some(65536)
                body, buf = buf[:n], buf[n:]
                self.requests.append((method, target))
                status, extra, text = await self._answer(method, target, hdrs, body.decode())
                out = text.encode()
                head_out = f"HTTP/1.1 {status} X\r\nContent-Length: {len(out)}\r\n{extra}\r\n"
                await stream.send_all(head_out.encode() + out)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            pass

    async def _answer(
        self, method: str, target: str, hdrs: dict[str, str], body: str
    ) -> tuple[int, str, str]:
        u = urlsplit(target)
        if u.path == "/ok":
            return 200, "", "first line\nsecond line\n"
        if u.path == "/echo":
            return (
                200,
                "",
                f"{method}|{body}|{hdrs.get('x-token', '')}|{hdrs.get('content-type', '')}",
            )
        if u.path == "/slow":
            ms = int(parse_qs(u.query).get("ms", ["300"])[0])
            await trio.sleep(ms / 1000)
            return 200, "", "slow"
        if u.path == "/hdr":
            return 200, "X-Answer: 42\r\n", "h"
        if u.path == "/500":
            return 500, "", "boom"
        return 404, "", "missing"
