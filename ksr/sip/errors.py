"""Errors of the sans-IO SIP core.

Every error carries the status a server should answer with (``status_hint``) and the reason
phrase to put in that answer, so the receive path can reply without knowing what went wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Request


class SipProtocolError(Exception):
    """A message broke the protocol. Not raised directly: use one of the two subclasses."""

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        if type(self) is SipProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError")
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint


class RemoteProtocolError(SipProtocolError):
    """What the peer sent is malformed (answer ``status_hint`` or drop). ``partial``: the
    request as far as it was parsed, when its start line was readable (so it can be answered)."""

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        super().__init__(reason, status_hint)
        self.partial: Request | None = None


class LocalProtocolError(SipProtocolError):
    """What we were asked to build or send is malformed."""
