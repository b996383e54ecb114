"""rr's per-request work, compiled (ksr/native.py): loose routing of every in-dialog request
and the Record-Route an initial request gets. The module's KSR functions (``__init__.py``)
stay Python and call in here: two loose_route calls and one record_route per call ran as a
dozen interpreted frames and closures each."""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Final, TypeVar

from ksr.core.context import MsgContext, SocketInfo, SocketLump
from ksr.sip.builders import without_first_values
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import parse_name_addr, split_commas
from ksr.sip.hostport import format_hostport
from ksr.sip.message import Header, Message, Request
from ksr.sip.uri import Uri, parse_uri

# parses remembered per text (a bounded table, as the resolver's): every in-dialog request of
# every call carries the same Route value (our own Record-Route) and mostly the same R-URIs
PARSES_MAX: Final = 2048
T = TypeVar("T")


def remembered(seen: dict[str, T | RemoteProtocolError], text: str, parse: Callable[[str], T]) -> T:
    """``parse(text)`` (or the error it raised), from ``seen`` once it was parsed."""
    hit = seen.get(text)
    if hit is None:
        try:
            hit = parse(text)
        except RemoteProtocolError as err:
            hit = err
        if len(seen) >= PARSES_MAX:
            seen.clear()  # start again rather than grow with every new text
        seen[text] = hit
    if isinstance(hit, RemoteProtocolError):
        raise hit
    return hit


def route_uri(value: str) -> tuple[str, Uri]:
    na = parse_name_addr(value)
    return na.uri_text, na.uri


def uri_params(u: Uri) -> str:
    """The URI's parameters as they are kept for check_route_param (";k" or ";k=v" each)."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in u.params.items())


class RemoveRoutes:
    """A lump removing the first ``count`` Route values (and appending a Route, strict
    routing)."""

    __slots__ = ("count", "append")

    def __init__(self, count: int, append: str | None = None) -> None:
        self.count = count
        self.append = append

    def __call__(self, m: Message, original: Container[int]) -> None:
        out = without_first_values(m.headers, "route", self.count)
        append = self.append
        if append is not None:
            idx = len(out) - 1
            for i, h in enumerate(out):
                if h.key == "route":
                    idx = i
            out.insert(idx + 1, Header("Route", f"<{append}>"))
        m.headers = out
        m.forget_parsed("route")


class RemoveLastRoute:
    """A lump removing the last Route value (strict routing: it became the R-URI)."""

    def __call__(self, m: Message, original: Container[int]) -> None:
        for i in range(len(m.headers) - 1, -1, -1):
            h = m.headers[i]
            if h.key == "route":
                values = split_commas(h.value)
                if len(values) > 1:
                    m.headers[i] = Header(h.name, ", ".join(values[:-1]))
                else:
                    del m.headers[i]
                break


class Router:
    """What rr keeps between requests (parsed Route values and R-URIs, our Record-Route
    address per socket) and the work done with it."""

    def __init__(self, is_myself_addr: Callable[[str, int | None], bool]) -> None:
        self.is_myself_addr = is_myself_addr
        self.routes_seen: dict[str, tuple[str, Uri] | RemoteProtocolError] = {}
        self.uris_seen: dict[str, Uri | RemoteProtocolError] = {}
        # per socket (by identity; the entry keeps the socket, so its id is not reused):
        # host:port;transport of our Record-Route URI, the same for every request
        self.rr_addrs: dict[int, tuple[SocketInfo, str]] = {}
        # the module's enable_full_lr, append_fromtag, enable_double_rr (set once it loads):
        # record_route reads them here, not through the interpreted module per request
        self.full_lr = False
        self.fromtag = True
        self.double = True

    # -- Route -------------------------------------------------------------------------------
    def mine(self, u: Uri) -> bool:
        port = u.port
        if port is None:
            port = 5061 if u.scheme == "sips" else 5060
        return self.is_myself_addr(u.host, port)

    def routes(self, req: Request) -> list[tuple[str, Uri]]:
        """(URI text, URI) of every Route value; the URIs are shared: read them, never change."""
        values = req.get_values("route")
        if not values:
            return []
        seen = self.routes_seen
        return [remembered(seen, v, route_uri) for v in values]

    def ruri(self, ctx: MsgContext, req: Request) -> Uri:
        """The R-URI parsed (shared, as ``routes``), kept by its text: an in-dialog request's
        R-URI is the peer's Contact, the same text for the ACK and the BYE of a call (and for
        every call to that peer), parsed once."""
        return remembered(self.uris_seen, ctx.ruri or req.uri, parse_uri)

    def loose_route(self, ctx: MsgContext, mode: int = 0) -> int:
        """loose_route's return code (see the KSR function); $du, the R-URI and the lumps
        removing Routes set on ``ctx``."""
        req = ctx.msg
        if not isinstance(req, Request):
            return -1
        try:
            routes = self.routes(req)
            to_tag = req.to.tag
            ruri = self.ruri(ctx, req)
        except RemoteProtocolError:
            return -1
        extra = ctx.extra
        if extra:
            extra.pop("rr_route_params", None)
            extra.pop("rr_next_hop", None)
        if not routes:
            return -1
        removed = 0
        if not mode & 1 and ruri.is_sip and "lr" in ruri.params and self.mine(ruri):
            # RFC 3261 §16.4: a strict router put our Record-Route URI in the R-URI; the real
            # R-URI is the last Route.
            extra["rr_route_params"] = uri_params(ruri)
            ctx.ruri = routes[-1][0]
            ctx.add_lump(RemoveLastRoute())
            routes = routes[:-1]
            if not routes:
                return 1
        first_text, first = routes[0]
        if first.is_sip and self.mine(first):
            removed = 1
            extra["rr_route_params"] = uri_params(first)
            if "r2" in first.params and len(routes) > 1 and self.mine(routes[1][1]):
                removed = 2
            if len(routes) <= removed:
                ctx.add_lump(RemoveRoutes(removed))
                return 1 if to_tag else -1
            nxt_text, nxt = routes[removed]
        else:
            nxt_text, nxt = first_text, first
            if not to_tag:
                ctx.dst_uri = nxt_text
                extra["rr_next_hop"] = True
                return -3
        if "lr" in nxt.params:
            ctx.dst_uri = nxt_text
            extra["rr_next_hop"] = True
            if removed:
                ctx.add_lump(RemoveRoutes(removed))
            return 1
        # The next hop is a strict router (RFC 3261 §16.6 step 7): it goes in the R-URI and the
        # R-URI goes to the end of the Route set.
        old = ctx.ruri or req.uri
        ctx.ruri = nxt_text
        extra["rr_next_hop"] = True
        ctx.add_lump(RemoveRoutes(removed + 1, old))
        return 1

    # -- Record-Route ------------------------------------------------------------------------
    def record_route(
        self, ctx: MsgContext, user_params: str, full_lr: bool, fromtag: bool, double: bool
    ) -> int:
        """record_route / record_route_params (the module's parameters passed in)."""
        tail = (";lr=on" if full_lr else ";lr") + (ftag_param(ctx) if fromtag else "")
        build = AutoRecordRoute(self, ctx.socket, tail + user_params, double)
        return add_record_route(ctx, build)

    def auto_record_route(self, ctx: MsgContext, user_params: str = "") -> int:
        """record_route / record_route_params with the module's parameters."""
        return self.record_route(ctx, user_params, self.full_lr, self.fromtag, self.double)

    def rr_addr(self, sock: SocketInfo) -> str:
        """``host:port;transport=...`` of our Record-Route URI for a socket."""
        hit = self.rr_addrs.get(id(sock))
        if hit is not None and hit[0] is sock:
            return hit[1]
        addr = format_hostport(sock.adv_ip, sock.adv_port)
        if sock.proto != "udp":
            addr += ";transport=" + sock.proto
        if len(self.rr_addrs) >= 256:
            self.rr_addrs.clear()  # listeners are few; stay bounded all the same
        self.rr_addrs[id(sock)] = (sock, addr)
        return addr


# the kind of our Record-Route lump: the header(s) built for the socket the request leaves through
RR_LUMP: Final = "record-route"


def ftag_param(ctx: MsgContext) -> str:
    """``;ftag=`` and the From tag (empty without one)."""
    try:
        tag = ctx.msg.from_.tag
    except RemoteProtocolError:
        return ""
    return ";ftag=" + tag if tag else ""


def add_record_route(ctx: MsgContext, build: Callable[[SocketInfo, str], list[str]]) -> int:
    """The Record-Route lump of ``build`` on the request (once per request)."""
    extra = ctx.extra
    if not ctx.msg.is_request or extra.get("rr_added"):
        return -1
    extra["rr_added"] = True
    # add_rr_param before record_route; those after it add lumps of their own
    params = "".join(extra.get("rr_params") or ())
    ctx.add_lump(SocketLump(AddRecordRoute(build, ctx.socket, params), RR_LUMP))
    return 1


class AutoRecordRoute:
    """record_route's builder: the Record-Route values for the socket a request leaves
    through (two, RFC 5658, when it leaves on another transport or address than it came)."""

    __slots__ = ("router", "inbound", "tail", "double")

    def __init__(self, router: Router, inbound: SocketInfo, tail: str, double: bool) -> None:
        self.router = router
        self.inbound = inbound
        self.tail = tail  # ;lr, ;ftag=..., the caller's parameters
        self.double = double  # enable_double_rr

    def __call__(self, out: SocketInfo, params: str) -> list[str]:
        tail = self.tail + params
        inbound = self.inbound
        router = self.router
        if (
            out is not inbound
            and self.double
            and (
                out.proto != inbound.proto
                or out.adv_ip != inbound.adv_ip
                or out.adv_port != inbound.adv_port
            )
        ):
            return [
                "<sip:" + router.rr_addr(out) + ";r2=on" + tail + ">",
                "<sip:" + router.rr_addr(inbound) + ";r2=on" + tail + ">",
            ]
        return ["<sip:" + router.rr_addr(inbound) + tail + ">"]


class AddRecordRoute:
    """The SocketLump change of record_route: the builder's values on top of the copy that
    leaves through ``out`` (the socket the request came on when there is none)."""

    __slots__ = ("build", "inbound", "params")

    def __init__(
        self, build: Callable[[SocketInfo, str], list[str]], inbound: SocketInfo, params: str
    ) -> None:
        self.build = build
        self.inbound = inbound  # not the context: it keeps its lumps, a cycle only a GC frees
        self.params = params

    def __call__(self, m: Message, original: Container[int], out: SocketInfo | None) -> None:
        values = self.build(out if out is not None else self.inbound, self.params)
        headers = m.headers
        for i, v in enumerate(values):
            headers.insert(i, Header("Record-Route", v))
        m.forget_parsed("record-route")
