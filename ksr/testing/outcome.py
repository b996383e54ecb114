"""What one received message led to: replies, relayed requests, header changes, routes run."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from ksr.core.context import MsgContext, RouteType
from ksr.sip.message import Header, Message, Request, Response

from .capture import Sent


@dataclass(frozen=True, slots=True)
class RouteRun:
    """A route or callback the server ran: its name, arguments, route type and result
    (1 done, 0 failed, 2 no such function)."""

    name: str
    args: tuple[object, ...]
    route: str
    rc: int


@dataclass(slots=True)
class Outcome:
    received: Message | None
    received_headers: list[Header]
    ctx: MsgContext | None
    sent: list[Sent] = field(default_factory=list)
    runs: list[RouteRun] = field(default_factory=list)
    logs: list[logging.LogRecord] = field(default_factory=list)

    # -- replies -----------------------------------------------------------------------------
    @property
    def replies(self) -> list[Response]:
        return [s.reply for s in self.sent if s.is_reply]

    @property
    def reply(self) -> Response | None:
        """The final reply sent back (else the last provisional one), or None."""
        replies = self.replies
        finals = [r for r in replies if r.status >= 200]
        if finals:
            return finals[-1]
        return replies[-1] if replies else None

    @property
    def code(self) -> int | None:
        r = self.reply
        return r.status if r is not None else None

    @property
    def reason(self) -> str | None:
        r = self.reply
        return r.reason if r is not None else None

    # -- relayed requests ------------------------------------------------------------------
    @property
    def relayed(self) -> list[Sent]:
        """Requests the server sent on (each with its destination)."""
        return [s for s in self.sent if s.msg is not None and not s.is_reply]

    @property
    def forwarded(self) -> Request | None:
        """The first request sent on, as it went on the wire (lumps applied), or None."""
        relayed = self.relayed
        return relayed[0].request if relayed else None

    @property
    def destination(self) -> str | None:
        """``proto:host:port`` the first relayed request went to."""
        relayed = self.relayed
        return relayed[0].destination if relayed else None

    @property
    def ruri(self) -> str | None:
        fwd = self.forwarded
        return fwd.uri if fwd is not None else None

    def _own_via_dropped(self, msg: Message) -> list[Header]:
        headers = list(msg.headers)
        for i, h in enumerate(headers):
            if h.key == "via":  # the top Via is the one the server added
                del headers[i]
                break
        return headers

    def _diff(self, a: list[Header], b: list[Header]) -> list[Header]:
        """Headers in ``a`` that are not in ``b`` (as a multiset of name and value)."""
        left = Counter((h.name.lower(), h.value) for h in b)
        out = []
        for h in a:
            key = (h.name.lower(), h.value)
            if left[key]:
                left[key] -= 1
            else:
                out.append(h)
        return out

    @property
    def added_headers(self) -> list[Header]:
        """Headers the forwarded request has and the received one had not (Via of ksr aside)."""
        fwd = self.forwarded
        if fwd is None:
            return []
        return self._diff(self._own_via_dropped(fwd), self.received_headers)

    @property
    def removed_headers(self) -> list[Header]:
        """Headers of the received request missing from the forwarded one."""
        fwd = self.forwarded
        if fwd is None:
            return []
        return self._diff(self.received_headers, self._own_via_dropped(fwd))

    def added(self, name: str) -> list[str]:
        """Values of header ``name`` that were added."""
        return [h.value for h in self.added_headers if h.name.lower() == name.lower()]

    def removed(self, name: str) -> list[str]:
        return [h.value for h in self.removed_headers if h.name.lower() == name.lower()]

    # -- script state --------------------------------------------------------------------------
    @property
    def flags(self) -> int:
        return self.ctx.flags if self.ctx is not None else 0

    def isflagset(self, flag: int) -> bool:
        return bool(self.flags & (1 << flag))

    @property
    def dropped(self) -> bool:
        return bool(self.ctx is not None and self.ctx.drop)

    @property
    def events(self) -> list[str]:
        """Event names delivered to the script while this message was handled."""
        return [str(r.args[0]) for r in self.runs if r.route == RouteType.EVENT and r.args]

    @property
    def failed_routes(self) -> list[RouteRun]:
        """Routes that ended with a script error (logged with file:line)."""
        return [r for r in self.runs if r.rc == 0]

    def log_lines(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.logs if r.levelno >= level]

    def __repr__(self) -> str:
        crlf = b"\r\n"
        what = [
            f"{s.destination} {s.data.split(crlf, 1)[0].decode(errors='replace')}"
            for s in self.sent
        ]
        return f"<Outcome sent={what} flags={self.flags:#x} runs={[r.name for r in self.runs]}>"
