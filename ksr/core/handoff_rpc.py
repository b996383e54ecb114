"""RPC commands between workers over the hand-off sockets (ksr/core/handoff.py): a request
goes out as one frame, its reply may come back in several pieces (handoff_codec)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from . import handoff_codec as codec

log = logging.getLogger("ksr.handoff")

RPC_TIMEOUT = 3.0


class SendFrame(Protocol):
    def __call__(
        self, worker: int, op: int, port: int, conn_id: int, meta: str, payload: bytes
    ) -> bool | None: ...


class WorkerRpc:
    """Asks other workers (``call``) and answers them (``answer``) with this worker's RPC
    registry (``handle``)."""

    def __init__(self, send: SendFrame, handle: Callable[[Any], Awaitable[Any]]) -> None:
        self.send = send
        self.handle = handle
        self.pending: dict[int, codec.ReplyPieces] = {}
        self.answered: dict[int, trio.Event] = {}
        self.ids = itertools.count(1)

    async def answer(self, origin: int, rid: int, request: Any) -> None:
        reply = await self.handle(request)
        for meta, piece in codec.rpc_reply_pieces(rid, reply):
            self.send(origin, codec.OP_RPC_REPLY, 0, 0, meta, piece)

    def piece(self, f: codec.Frame) -> None:
        rid, n, total = codec.parse_reply_meta(f.meta)
        p = self.pending.get(rid)
        if p is not None and p.add(n, total, f.payload):  # None: answered after the timeout
            self.answered[rid].set()

    async def call(self, worker: int, method: str, params: list[Any]) -> dict[str, Any] | None:
        """One RPC on another worker: its JSON-RPC reply object, or None (down, timeout)."""
        rid = next(self.ids)
        p = self.pending[rid] = codec.ReplyPieces()
        done = self.answered[rid] = trio.Event()
        try:
            meta, payload = codec.rpc_request(rid, method, params)
            if not self.send(worker, codec.OP_RPC, 0, 0, meta, payload):
                return None
            with trio.move_on_after(RPC_TIMEOUT):
                await done.wait()
            if not done.is_set():
                log.warning("worker %d did not answer %s", worker, method)
                return None
            return p.reply()
        finally:
            del self.pending[rid], self.answered[rid]
