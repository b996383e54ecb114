"""A minimal caller and callee on real UDP sockets, enough to run calls through ksr."""

from __future__ import annotations

import itertools

from ksr.sip.builders import make_reply
from ksr.sip.headers import parse_name_addr
from ksr.sip.message import Request, Response, parse_message_untrusted
from tests.support import UdpPeer

_seq = itertools.count(1)


class Ua:
    """One side of a call. ``dialog`` holds what a UA needs for in-dialog requests."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.peer = UdpPeer()
        self.call_id = ""
        self.local_tag = f"{name}-{next(_seq)}"
        self.remote_tag = ""
        self.remote_target = ""
        self.route_set: list[str] = []
        self.cseq = 0
        self.invite: Request | None = None  # the INVITE received (callee)
        self.local_uri = f"sip:{name}@127.0.0.1"
        self.remote_uri = ""

    async def start(self) -> Ua:
        await self.peer.bind()
        return self

    @property
    def contact(self) -> str:
        return f"sip:{self.name}@127.0.0.1:{self.peer.port}"

    def _req(self, method: str, ruri: str, cseq: int, to: str, routes: list[str]) -> str:
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.peer.port};branch=z9hG4bK-{self.name}-{next(_seq)};rport",
            "Max-Forwards: 70",
            f"From: <{self.local_uri}>;tag={self.local_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <{self.contact}>",
        ]
        lines += [f"Route: {r}" for r in routes]
        lines.append("Content-Length: 0")
        return "\r\n".join(lines) + "\r\n\r\n"

    async def invite_via(
        self, proxy: tuple[str, int], callee: Ua, call_id: str, ruri: str = ""
    ) -> str:
        """An INVITE to the callee's contact (or to ``ruri``, e.g. its address of record)."""
        self.call_id = call_id
        self.cseq = 1
        self.remote_uri = callee.local_uri
        text = self._req("INVITE", ruri or callee.contact, 1, f"<{callee.local_uri}>", [])
        await self.peer.send(text, proxy)
        return text

    async def cancel_via(self, proxy: tuple[str, int], invite_text: str) -> None:
        inv = parse_message_untrusted(invite_text.encode())
        assert isinstance(inv, Request)
        lines = [f"CANCEL {inv.uri} SIP/2.0"]
        for h in inv.headers:
            if h.key in ("via", "from", "to", "call-id", "max-forwards"):
                lines.append(f"{h.name}: {h.value}")
        lines += [f"CSeq: {inv.cseq.number} CANCEL", "Content-Length: 0"]
        await self.peer.send("\r\n".join(lines) + "\r\n\r\n", proxy)

    async def recv(self, timeout: float = 5.0) -> Request | Response:
        return parse_message_untrusted(await self.peer.recv(timeout))

    async def expect_reply(
        self, code: int, method: str = "INVITE", timeout: float = 5.0
    ) -> Response:
        """Skip provisional replies (and stray retransmissions) until ``code`` arrives."""
        while True:
            m = await self.recv(timeout)
            if isinstance(m, Response) and m.status == code and m.cseq.method == method:
                return m
            if (
                isinstance(m, Response)
                and m.status >= 200
                and m.status != code
                and m.cseq.method == method
            ):
                raise AssertionError(f"{self.name}: expected {code}, got {m.status}")

    async def expect_request(self, method: str, timeout: float = 5.0) -> Request:
        while True:
            m = await self.recv(timeout)
            if isinstance(m, Request) and m.method == method:
                return m

    def learn_from_2xx(self, rpl: Response) -> None:
        """Caller side: remote tag, target and route set (RFC 3261 §12.1.2)."""
        self.remote_tag = rpl.to_tag or ""
        self.remote_target = parse_name_addr(rpl.get("contact") or "").uri_text
        self.route_set = list(reversed(rpl.get_values("record-route")))

    async def answer(self, req: Request, code: int, proxy: tuple[str, int]) -> None:
        """Callee side: reply to a request (received through the proxy)."""
        extra = []
        if req.method == "INVITE":
            self.invite = req
            self.call_id = req.call_id
            self.remote_tag = req.from_tag or ""
            self.remote_target = parse_name_addr(req.get("contact") or "").uri_text
            self.route_set = req.get_values("record-route")
            self.remote_uri = req.from_.uri_text
            if code < 300:
                extra.append(("Contact", f"<{self.contact}>"))
                extra += [("Record-Route", v) for v in req.get_values("record-route")]
        rpl = make_reply(req, code, None, to_tag=self.local_tag, extra_headers=extra)
        await self.peer.send(rpl.to_bytes(), proxy)

    async def in_dialog(self, method: str, proxy: tuple[str, int]) -> None:
        """ACK or BYE inside the dialog, sent to the proxy (the first Route)."""
        cseq = self.cseq if method == "ACK" else self.cseq + 1
        if method != "ACK":
            self.cseq = cseq
        to = f"<{self.remote_uri}>;tag={self.remote_tag}"
        await self.peer.send(
            self._req(method, self.remote_target, cseq or 1, to, self.route_set), proxy
        )

    def close(self) -> None:
        self.peer.close()
