"""A tiny authoritative DNS server for tests: UDP on 127.0.0.1, records given as text, every
other name NXDOMAIN. Queries for a name in ``slow`` wait until ``release`` is set (a DNS answer
that is late for as long as the test wants, with no clock involved)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import trio


class DnsResponder:
    def __init__(self, records: dict[tuple[str, str], list[str]], ttl: int = 300) -> None:
        # (name, type) -> rdata texts, e.g. ("_sip._udp.example.test", "SRV"): ["10 5 5070 a."]
        self.records = {(n.lower().rstrip("."), t.upper()): v for (n, t), v in records.items()}
        self.ttl = ttl
        self.slow: set[str] = set()
        self.release = trio.Event()
        self.slow_asked = trio.Event()  # a query for a slow name has arrived
        self.asked: list[tuple[str, str]] = []  # (name, type) in arrival order
        self.sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self.port = 0

    async def bind(self) -> DnsResponder:
        await self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        return self

    @property
    def server_spec(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                data, addr = await self.sock.recvfrom(4096)
                nursery.start_soon(self._answer, data, addr)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(q.rdtype)
        self.asked.append((name, rdtype))
        if name in self.slow:
            self.slow_asked.set()
            await self.release.wait()
        rpl = dns.message.make_response(query)
        rpl.flags |= dns.flags.AA
        texts = self.records.get((name, rdtype))
        if texts:
            rpl.answer.append(dns.rrset.from_text_list(q.name, self.ttl, "IN", rdtype, texts))
        elif not any(n == name for n, _ in self.records):
            rpl.set_rcode(dns.rcode.NXDOMAIN)
        # records in the order given (dnspython shuffles them by default): tests see one order
        await self.sock.sendto(rpl.to_wire(want_shuffle=False), addr)


@asynccontextmanager
async def dns_responder(
    records: dict[tuple[str, str], list[str]] | None = None,
) -> AsyncIterator[DnsResponder]:
    r = await DnsResponder(records or {}).bind()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(r.serve)
        try:
            yield r
        finally:
            r.release.set()
            nursery.cancel_scope.cancel()
            r.sock.close()
