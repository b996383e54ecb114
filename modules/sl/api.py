"""sl's API for other modules (sanity), as Kamailio's ``load_sl_api``.

Obtained in ``init``: ``sl = self.optional("sl", SlApi)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ksr.core.context import MsgContext

    from . import Sl

__all__ = ["SlApi"]


class SlApi:
    """What other modules use of sl."""

    __slots__ = ("_sl",)

    def __init__(self, sl: Sl) -> None:
        self._sl = sl

    def reply(self, ctx: MsgContext, code: int, reason: str, stateful_if_possible: bool) -> int:
        """Answer the request (statelessly, or through its transaction when there is one and
        ``stateful_if_possible``): 1 sent, -1 not."""
        return self._sl.reply(ctx, code, reason, stateful_if_possible)
