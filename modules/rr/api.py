"""rr's API for other modules (acc), as Kamailio's ``load_rr_api``.

Obtained in ``init``: ``rr = self.optional("rr", RrApi)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ksr.core.context import MsgContext

    from . import Rr

__all__ = ["RrApi"]


class RrApi:
    """What other modules use of rr."""

    __slots__ = ("_rr",)

    def __init__(self, rr: Rr) -> None:
        self._rr = rr

    def is_direction(self, ctx: MsgContext, direction: str) -> int:
        """1 if the in-dialog request goes ``"downstream"``/``"upstream"`` (by the ftag of our
        Route, after loose_route), else -1."""
        return self._rr.is_direction(ctx, direction)
