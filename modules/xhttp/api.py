"""xhttp's API for the modules that answer HTTP requests in ``xhttp:request`` (jsonrpcs,
xhttp_prom, status, websocket).

Obtained in ``init``: ``xhttp = self.optional("xhttp", XhttpApi)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ksr.transport.http import HttpExchange

if TYPE_CHECKING:
    from ksr.core.context import MsgContext

    from . import Xhttp

__all__ = ["HttpExchange", "XhttpApi"]


class XhttpApi:
    """What other modules use of xhttp."""

    __slots__ = ("_xhttp",)

    def __init__(self, xhttp: Xhttp) -> None:
        self._xhttp = xhttp

    def exchange(self, ctx: MsgContext) -> HttpExchange | None:
        """The HTTP request ``ctx`` presents (in ``xhttp:request``), else None."""
        return self._xhttp.exchange(ctx)

    def reply(self, ctx: MsgContext, code: int, reason: str, ctype: str, body: str) -> int:
        """KSR.xhttp.xhttp_reply: 0 answered (Kamailio's code), -1 not."""
        return self._xhttp.xhttp_reply(ctx, code, reason, ctype, body)
