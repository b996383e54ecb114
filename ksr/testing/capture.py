"""A transport that keeps what the server sends instead of putting it on a wire.

It is registered in ``server.transports`` like the UDP and TCP transports, so the whole
pipeline (routing, lumps, Via handling, tm, replies) runs for real; only the last step, the
socket write, is replaced by a list append.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ksr.core.context import SocketInfo
from ksr.sip.message import Message, Request, Response, parse_message_untrusted


@dataclass(slots=True)
class Sent:
    """One message the server sent."""

    proto: str
    host: str
    port: int
    data: bytes
    socket: SocketInfo | None = None
    msg: Message | None = field(default=None)

    @property
    def destination(self) -> str:
        """``proto:host:port``, as ``KSR.pv.get("$du")`` style strings read."""
        return f"{self.proto}:{self.host}:{self.port}"

    @property
    def is_reply(self) -> bool:
        return isinstance(self.msg, Response)

    @property
    def request(self) -> Request:
        assert isinstance(self.msg, Request), f"sent a reply, not a request: {self.data[:40]!r}"
        return self.msg

    @property
    def reply(self) -> Response:
        assert isinstance(self.msg, Response), f"sent a request, not a reply: {self.data[:40]!r}"
        return self.msg


class CaptureTransport:
    """Stands where a transport stands; ``send`` records and reports success."""

    def __init__(self, proto: str, sent: list[Sent]) -> None:
        self.proto = proto
        self.sent = sent
        self.sockets: list[SocketInfo] = []

    def send(
        self,
        data: bytes,
        host: str,
        port: int,
        sock: SocketInfo | None = None,
        conn_id: int = 0,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        try:
            msg: Message | None = parse_message_untrusted(bytes(data))
        except Exception:
            msg = None  # keep the bytes: a test may want to see what was wrong
        self.sent.append(Sent(self.proto, host, port, bytes(data), sock, msg))
        return True
