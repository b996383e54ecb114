"""A JSON-RPC client on a real unix datagram socket, for tests inside a trio run."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import uuid
from typing import Any

import trio


class DgramClient:
    def __init__(self) -> None:
        self.path = os.path.join(
            tempfile.gettempdir(), f"ksr_rpc_client_{uuid.uuid4().hex[:12]}.sock"
        )
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    async def __aenter__(self) -> DgramClient:
        await self.sock.bind(self.path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sock.close()
        os.unlink(self.path)

    async def send_raw(self, server: str, data: bytes) -> None:
        await self.sock.sendto(data, server)

    async def recv_raw(self, timeout: float = 5.0) -> bytes:
        with trio.fail_after(timeout):
            return bytes(await self.sock.recv(1 << 20))

    async def call(self, server: str, method: str, *params: Any, rid: int = 7) -> dict[str, Any]:
        req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params:
            req["params"] = list(params)
        await self.send_raw(server, json.dumps(req).encode())
        buf = b""
        while True:
            buf += await self.recv_raw()
            try:
                return json.loads(buf)  # type: ignore[no-any-return]
            except ValueError:
                continue  # a long reply comes in several datagrams
