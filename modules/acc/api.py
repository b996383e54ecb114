"""acc's API for other modules (status: the last CDRs).

Obtained in ``init``: ``acc = self.optional("acc", AccApi)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import Acc

__all__ = ["AccApi"]


class AccApi:
    """What other modules use of acc."""

    __slots__ = ("_acc",)

    def __init__(self, acc: Acc) -> None:
        self._acc = acc

    def recent_cdrs(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` CDRs this worker queued, oldest first (as a slice: 0 gives all)."""
        return list(self._acc.recent)[-n:]
