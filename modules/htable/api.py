"""htable's API for other modules (auth's failed_auth_ban_htable).

Obtained in ``init``: ``htable = self.optional("htable", HtableApi)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .table import HTable

if TYPE_CHECKING:
    from . import Htable

__all__ = ["HTable", "HtableApi"]


class HtableApi:
    """What other modules use of htable."""

    __slots__ = ("_ht",)

    def __init__(self, ht: Htable) -> None:
        self._ht = ht

    def table(self, name: str) -> HTable | None:
        """The table ``name`` declared in [modparam.htable], or None."""
        return self._ht.table(name)
