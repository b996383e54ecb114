"""The processing context of one message: what a KSR call reads and changes.

The received message is never changed in place. Header and body changes a script asks for are
recorded as *lumps* (as Kamailio does): reading the message back gives the received values, and
the changes are applied when the message is sent on. R-URI and destination-URI changes are
visible at once, again as in Kamailio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

from ksr.sip.message import Header, Message, Request, Response
from ksr.sip.received import sent_headers

if TYPE_CHECKING:
    from .core_api import Core

# A lump gets the copy to change and what says which of its headers are the received ones
# (``id(h) in original``: textops, remove_hf; see OriginalHeaders)
Lump = Callable[[Message, Container[int]], None]
AnyMessage = TypeVar("AnyMessage", Request, Response)
# the wall clock as a Final: compiled, a C static, where ``time.time`` read the time module's
# dict for every message's context
_wall_time: Final = time.time


@dataclass(frozen=True, slots=True)
class SocketInfo:
    """A local listening socket."""

    proto: str  # udp, tcp, tls, ws, wss
    ip: str
    port: int
    name: str = ""
    advertised_ip: str | None = None
    advertised_port: int | None = None

    @property
    def adv_ip(self) -> str:
        return self.advertised_ip or self.ip

    @property
    def adv_port(self) -> int:
        return self.advertised_port or self.port

    def __str__(self) -> str:
        return f"{self.proto}:{self.ip}:{self.port}"


class SocketLump:
    """A lump whose change depends on the socket the copy leaves through (rr's Record-Route
    with two entries): ``apply_lumps(out_socket=...)`` hands it over (tm does, per branch);
    applied without one, it gets None. ``kind`` names what it adds (rr finds its own by it)."""

    __slots__ = ("change", "kind")

    def __init__(
        self,
        change: Callable[[Message, Container[int], SocketInfo | None], None],
        kind: str = "",
    ) -> None:
        self.change = change
        self.kind = kind

    def __call__(self, m: Message, original: Container[int]) -> None:
        self.change(m, original, None)


class ReplaceHeader:
    """A lump putting a new value in place of one received header (``hdr``, that very object:
    Header has no __eq__), e.g. maxfwd's decremented Max-Forwards. A class here, compiled: a
    closure in the module ran as an interpreted frame per copy sent."""

    __slots__ = ("hdr", "value")

    def __init__(self, hdr: Header, value: str) -> None:
        self.hdr = hdr
        self.value = value

    def __call__(self, m: Message, original: Container[int]) -> None:
        hdr = self.hdr
        headers = m.headers
        for i in range(len(headers)):
            if headers[i] is hdr:
                headers[i] = Header(hdr.name, self.value)
                return


class OriginalHeaders:
    """A lump's ``original``: ``id(h) in original`` when ``h`` is one of the headers the
    message was received with. The set of ids is made on the first question: most copies
    (maxfwd's, rr's lumps) never ask, and making it cost ~5k instructions per copy."""

    __slots__ = ("headers", "ids")

    def __init__(self, headers: list[Header]) -> None:
        self.headers = headers
        self.ids: frozenset[int] | None = None

    def __contains__(self, key: object) -> bool:
        ids = self.ids
        if ids is None:
            ids = self.ids = frozenset(map(id, self.headers))
        return key in ids


@dataclass(slots=True)
class Branch:
    """An extra destination of the request (destination set), like Kamailio's branches."""

    uri: str
    dst_uri: str | None = None
    q: int = -1  # q*1000, -1 = not set
    path: str | None = None
    flags: int = 0
    socket: SocketInfo | None = None
    ruid: str = ""
    instance: str = ""
    location_ua: str = ""


# What the Via ksr adds to a request carries (corex's via_* functions; Kamailio's FL_ADD_SRVID,
# FL_ADD_XAVP_VIA_PARAMS, FL_USE_XAVP_VIA_FIELDS)
VIA_ADD_SRVID: Final = 1
VIA_ADD_XAVP_PARAMS: Final = 2
VIA_USE_XAVP_FIELDS: Final = 4


class RouteType:
    REQUEST: Final = "request"
    REPLY: Final = "reply"  # core reply route
    ONREPLY: Final = "onreply"  # tm reply route
    FAILURE: Final = "failure"
    BRANCH: Final = "branch"
    BRANCH_FAILURE: Final = "branch_failure"
    EVENT: Final = "event"
    ONSEND: Final = "onsend"


class MsgContext:
    """State of one message while the script runs on it."""

    __slots__ = (
        "server",
        "msg",
        "src_ip",
        "src_port",
        "proto",
        "socket",
        "conn_id",
        "ruri",
        "dst_uri",
        "flags",
        "sflags",
        "bflags",
        "xflags",
        "branches",
        "drop",
        "route",
        "lumps",
        "reply_lumps",
        "reply_body",
        "_avps",
        "_xavps",
        "force_rport",
        "local_rport",
        "reply_no_connect",
        "reply_close",
        "forward_close",
        "forward_no_connect",
        "send_socket",
        "replied",
        "tx",
        "branch_idx",
        "timestamp",
        "faked",
        "extra",
        "advertised_address",
        "advertised_port",
        "last_error",
        "via_flags",
    )

    def __init__(
        self,
        server: Core,
        msg: Message,
        src_ip: str = "127.0.0.1",
        src_port: int = 5060,
        socket: SocketInfo | None = None,
        conn_id: int = 0,
    ) -> None:
        self.server = server
        self.msg = msg
        self.src_ip = src_ip
        self.src_port = src_port
        self.socket = socket or SocketInfo("udp", "127.0.0.1", 5060)
        self.proto = self.socket.proto
        self.conn_id = conn_id
        self.ruri: str | None = msg.uri if isinstance(msg, Request) else None
        self.dst_uri: str | None = None
        self.flags = 0
        self.sflags = 0
        self.bflags = 0
        self.xflags = 0
        self.branches: list[Branch] = []
        self.drop = False
        self.route = RouteType.REQUEST
        self.lumps: list[Lump] = []
        self.reply_lumps: list[Header] = []  # headers for the next local reply
        self.reply_body: tuple[bytes, str] | None = None
        # $avp and $xavp: made on first use (most messages have none; two empty dicts per
        # context cost ~1k instructions with the collector's share, ~8 contexts per call)
        self._avps: dict[str, list[int | str]] | None = None
        self._xavps: dict[str, list[dict[str, list[int | str]]]] | None = None
        self.force_rport = False
        self.local_rport = False
        self.reply_no_connect = False
        self.reply_close = False
        self.forward_close = False
        self.forward_no_connect = False
        self.send_socket: SocketInfo | None = None
        self.replied = 0  # status of the last reply we sent for this request
        self.tx: Any = None  # the tm transaction, when there is one
        self.branch_idx = 0
        self.timestamp = _wall_time()
        self.faked = False
        self.extra: dict[str, Any] = {}  # per-message scratch space for modules
        self.advertised_address: str | None = None
        self.advertised_port: str | None = None
        # the last internal error (Kamailio's ser_error): what sl/t_reply_error answer
        self.last_error: tuple[int, str] | None = None
        self.via_flags = 0  # VIA_* below (corex via_add_srvid...): Kamailio's msg_flags bits

    @property
    def avps(self) -> dict[str, list[int | str]]:
        """The message's AVPs by name (``$avp``), newest value first."""
        d = self._avps
        if d is None:
            d = self._avps = {}
        return d

    @property
    def xavps(self) -> dict[str, list[dict[str, list[int | str]]]]:
        """The message's xavps by name (``$xavp``; ``ksr/core/xavp.py``)."""
        d = self._xavps
        if d is None:
            d = self._xavps = {}
        return d

    # -- convenience ------------------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        return self.msg.is_request

    @property
    def request(self) -> Request:
        assert isinstance(self.msg, Request)
        return self.msg

    @property
    def reply(self) -> Response:
        assert isinstance(self.msg, Response)
        return self.msg

    @property
    def method(self) -> str:
        m = self.msg
        if isinstance(m, Request):
            return m.method
        try:
            return m.cseq.method
        except Exception:
            return ""

    def next_hop(self) -> str | None:
        return self.dst_uri or self.ruri

    def add_lump(self, lump: Lump) -> None:
        self.lumps.append(lump)

    @overload
    def apply_lumps(self, *, out_socket: SocketInfo | None = None) -> Message: ...

    @overload
    def apply_lumps(
        self, msg: AnyMessage, *, out_socket: SocketInfo | None = None
    ) -> AnyMessage: ...

    def apply_lumps(
        self, msg: Message | None = None, *, out_socket: SocketInfo | None = None
    ) -> Message:
        """A copy of the message with the recorded changes applied (and R-URI for requests);
        ``out_socket``: the socket the copy is sent from (for SocketLumps)."""
        src = msg or self.msg
        out: Message
        if isinstance(src, Request):
            out = Request(
                src.method, self.ruri or src.uri, list(src.headers), src.body, src.version
            )
        else:
            assert isinstance(src, Response)
            out = Response(src.status, src.reason, list(src.headers), src.body, src.version)
        if self.lumps:
            original = OriginalHeaders(src.headers)
            for lump in self.lumps:
                if out_socket is not None and isinstance(lump, SocketLump):
                    lump.change(out, original, out_socket)
                else:
                    lump(out, original)
        if isinstance(src, Request) and src.via_fix is not None:
            out.headers = sent_headers(src, out.headers)  # received=/rport= on the copy only
        return out


@dataclass(slots=True, init=False)
class Destination:
    """Where to send: transport, address, port (resolved from a URI)."""

    proto: str
    host: str
    port: int
    uri: str = ""

    # written out: mypyc compiles it, where the generated one runs as Python code (one
    # Destination per reply and per forwarded message)
    def __init__(self, proto: str, host: str, port: int, uri: str = "") -> None:
        self.proto = proto
        self.host = host
        self.port = port
        self.uri = uri
