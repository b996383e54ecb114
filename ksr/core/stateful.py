"""What the core asks of the module that keeps transactions (tm), set by it in ``init`` as
``server.stateful``; None when no such module is loaded: then every reply is stateless."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ksr.sip.message import Request

    from .context import MsgContext


class Stateful(Protocol):
    def reply_if_transaction(self, ctx: MsgContext, code: int, reason: str) -> bool | None:
        """Reply in the request's transaction: whether it was sent, or None when the
        request has no transaction (the core then replies statelessly)."""
        ...

    def has_transaction(self, req: Request) -> bool:
        """Is this request a retransmission of one in a transaction? (overload shedding)"""
        ...
