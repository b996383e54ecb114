"""auth's API for the password sources built on it (auth_db), as Kamailio's ``load_auth_api``.

Obtained in ``init``: ``auth = self.require("auth", AuthApi)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import AUTH_ERROR, PROXY, WWW, Pending

if TYPE_CHECKING:
    from ksr.core.context import MsgContext

    from . import Auth

__all__ = ["AUTH_ERROR", "PROXY", "WWW", "AuthApi", "Pending"]


class AuthApi:
    """What other modules use of auth."""

    __slots__ = ("_auth",)

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    def authenticate(
        self,
        ctx: MsgContext,
        realm: str,
        hkey: str,
        ha1_of: Callable[[Pending], str | None],
        checks: int = 0,
        method: str | None = None,
    ) -> int:
        """The whole digest check with a password source: ``ha1_of`` gives the HA1 for the
        pending credentials, or None for an unknown user. Kamailio's return codes."""
        return self._auth.authenticate(ctx, realm, hkey, ha1_of, checks, method)
