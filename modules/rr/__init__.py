"""rr: Record-Route and Route processing (RFC 3261 §16.4, §16.6 step 4, §16.12; RFC 5658 double RR)."""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from typing import TypeVar

from ksr.core.context import Lump, MsgContext, SocketInfo, SocketLump
from ksr.core.module import ModParams, Module
from ksr.kemi.registry import Route, kemi
from ksr.sip.builders import without_first_values
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import parse_name_addr, split_commas
from ksr.sip.hostport import format_hostport
from ksr.sip.message import Header, Message, Request
from ksr.sip.uri import Uri, parse_uri

from .api import RrApi


class RrParams(ModParams):
    append_fromtag: int = 1
    enable_full_lr: int = 0
    enable_double_rr: int = 1
    add_username: int = 0
    ignore_user: int = 1
    force_send_socket: int = 0
    enable_socket_mismatch_warning: int = 1
    custom_user_avp: str = ""


# the Record-Route values for a request leaving through a socket, given extra params
RecordRouteBuilder = Callable[[SocketInfo, str], list[str]]


def _hostport(sock: SocketInfo) -> str:
    return format_hostport(sock.adv_ip, sock.adv_port)


def _transport(sock: SocketInfo) -> str:
    return "" if sock.proto == "udp" else f";transport={sock.proto}"


def _remove_routes(count: int, append: str | None = None) -> Lump:
    """A lump removing the first ``count`` Route values (and appending a Route, strict routing)."""

    def lump(m: Message, original: Container[int]) -> None:
        out = without_first_values(m.headers, "route", count)
        if append is not None:
            idx = max((i for i, h in enumerate(out) if h.key == "route"), default=len(out) - 1)
            out.insert(idx + 1, Header("Route", f"<{append}>"))
        m.headers = out
        m.forget_parsed("route")

    return lump


# the kind of our Record-Route lump: the header(s) built for the socket the request leaves through
RR_LUMP = "record-route"


def _is_record_route(lump: Lump) -> bool:
    return isinstance(lump, SocketLump) and lump.kind == RR_LUMP


def _param_lump(param: str) -> Lump:
    """add_rr_param after record_route: ``param`` at the end of the URI of each Record-Route
    this server added (those not in the received message)."""

    def lump(m: Message, original: Container[int]) -> None:
        for i, h in enumerate(m.headers):
            if h.key == "record-route" and id(h) not in original:
                end = h.value.rfind(">")
                if end >= 0:
                    m.headers[i] = Header(h.name, h.value[:end] + param + h.value[end:])
        m.forget_parsed("record-route")

    lump.rr_lump = True  # type: ignore[attr-defined]
    return lump


def _is_rr_lump(lump: Lump) -> bool:
    return _is_record_route(lump) or getattr(lump, "rr_lump", False)


# parses remembered per text (a bounded table, as the resolver's): every in-dialog request of
# every call carries the same Route value (our own Record-Route) and mostly the same R-URIs
_PARSES_MAX = 2048
T = TypeVar("T")


def _remembered(
    seen: dict[str, T | RemoteProtocolError], text: str, parse: Callable[[str], T]
) -> T:
    """``parse(text)`` (or the error it raised), from ``seen`` once it was parsed."""
    hit = seen.get(text)
    if hit is None:
        try:
            hit = parse(text)
        except RemoteProtocolError as err:
            hit = err
        if len(seen) >= _PARSES_MAX:
            seen.clear()  # start again rather than grow with every new text
        seen[text] = hit
    if isinstance(hit, RemoteProtocolError):
        raise hit
    return hit


def _route_uri(value: str) -> tuple[str, Uri]:
    na = parse_name_addr(value)
    return na.uri_text, na.uri


class Rr(Module):
    name = "rr"
    Params = RrParams

    def init(self) -> None:
        self._routes_seen: dict[str, tuple[str, Uri] | RemoteProtocolError] = {}
        self._uris_seen: dict[str, Uri | RemoteProtocolError] = {}
        # per socket (by identity; the entry keeps the socket, so its id is not reused):
        # host:port;transport of our Record-Route URI, the same for every request
        self._rr_addrs: dict[int, tuple[SocketInfo, str]] = {}

    def api(self) -> RrApi:
        return RrApi(self)

    # -- Record-Route ----------------------------------------------------------------------------
    def _lr(self) -> str:
        return ";lr=on" if self.params.enable_full_lr else ";lr"

    def _ftag(self, ctx: MsgContext) -> str:
        if not self.params.append_fromtag:
            return ""
        try:
            tag = ctx.msg.from_.tag
        except RemoteProtocolError:
            return ""
        return f";ftag={tag}" if tag else ""

    def _add_rr(self, ctx: MsgContext, build: RecordRouteBuilder) -> int:
        if not ctx.is_request or ctx.extra.get("rr_added"):
            return -1
        ctx.extra["rr_added"] = True
        # add_rr_param before record_route; those after it add lumps of their own
        params = "".join(ctx.extra.get("rr_params") or ())
        inbound = ctx.socket  # not ctx itself: ctx keeps its lumps, a cycle only a full GC frees

        def change(m: Message, original: Container[int], out: SocketInfo | None) -> None:
            for i, v in enumerate(build(out or inbound, params)):
                m.headers.insert(i, Header("Record-Route", v))
            m.forget_parsed("record-route")

        ctx.add_lump(SocketLump(change, RR_LUMP))
        return 1

    def _rr_addr(self, sock: SocketInfo) -> str:
        """``host:port;transport=...`` of our Record-Route URI for a socket."""
        hit = self._rr_addrs.get(id(sock))
        if hit is not None and hit[0] is sock:
            return hit[1]
        addr = f"{_hostport(sock)}{_transport(sock)}"
        if len(self._rr_addrs) >= 256:
            self._rr_addrs.clear()  # listeners are few; stay bounded all the same
        self._rr_addrs[id(sock)] = (sock, addr)
        return addr

    def _auto(self, ctx: MsgContext, user_params: str) -> RecordRouteBuilder:
        ftag = self._ftag(ctx)
        lr = self._lr()
        inbound = ctx.socket

        def build(out: SocketInfo, params: str) -> list[str]:
            tail = f"{lr}{ftag}{user_params}{params}"
            if (
                out is not inbound
                and self.params.enable_double_rr
                and (
                    out.proto != inbound.proto
                    or out.adv_ip != inbound.adv_ip
                    or out.adv_port != inbound.adv_port
                )
            ):
                return [
                    f"<sip:{self._rr_addr(out)};r2=on{tail}>",
                    f"<sip:{self._rr_addr(inbound)};r2=on{tail}>",
                ]
            return [f"<sip:{self._rr_addr(inbound)}{tail}>"]

        return build

    @kemi(routes=Route.REQUEST | Route.BRANCH | Route.FAILURE)
    def record_route(self, ctx: MsgContext) -> int:
        """Add Record-Route (two when the request leaves on another transport or address)."""
        return self._add_rr(ctx, self._auto(ctx, ""))

    @kemi(routes=Route.REQUEST | Route.BRANCH | Route.FAILURE)
    def record_route_params(self, ctx: MsgContext, params: str) -> int:
        """record_route_params(";p=v"): Record-Route with extra URI parameters."""
        return self._add_rr(ctx, self._auto(ctx, params))

    def _preset(self, ctx: MsgContext, addrs: list[str], auto_params: bool) -> int:
        addrs = [a.strip() for a in addrs if a.strip()]
        if not addrs:
            return -1
        tail = (self._lr() + self._ftag(ctx)) if auto_params else ""

        def build(out: SocketInfo, params: str) -> list[str]:
            vals = []
            for a in addrs:
                uri = a if a.startswith(("sip:", "sips:")) else f"sip:{a}"
                vals.append(f"<{uri}{tail}{params}>")
            return vals

        return self._add_rr(ctx, build)

    @kemi(routes=Route.REQUEST | Route.BRANCH | Route.FAILURE)
    def record_route_preset_one(self, ctx: MsgContext, addr: str) -> int:
        """Record-Route with this address ("host:port;params"); no lr/ftag added."""
        return self._preset(ctx, [addr], False)

    @kemi(routes=Route.REQUEST | Route.BRANCH | Route.FAILURE)
    def record_route_preset(self, ctx: MsgContext, addr1: str, addr2: str) -> int:
        """Two Record-Routes with these addresses (add r2=on yourself)."""
        return self._preset(ctx, [addr1, addr2], False)

    @kemi()
    def record_route_advertised_address(self, ctx: MsgContext, addr: str) -> int:
        """Record-Route with this address, with lr and ftag."""
        return self._preset(ctx, [addr], True)

    @kemi()
    def remove_record_route(self, ctx: MsgContext) -> int:
        """Undo record_route for this message."""
        ctx.lumps[:] = [lump for lump in ctx.lumps if not _is_rr_lump(lump)]
        ctx.extra.pop("rr_added", None)
        return 1

    @kemi(routes=Route.REQUEST | Route.BRANCH | Route.FAILURE)
    def add_rr_param(self, ctx: MsgContext, param: str) -> int:
        """add_rr_param(";name=val"): a parameter for our Record-Route URI."""
        if not param:
            return -1
        p = param if param.startswith(";") else ";" + param
        if any(_is_record_route(lump) for lump in ctx.lumps):
            # a lump: it goes with this branch (tm drops a branch route's lumps after it)
            ctx.add_lump(_param_lump(p))
        else:
            ctx.extra["rr_params"] = [*(ctx.extra.get("rr_params") or ()), p]
        return 1

    # -- Route -----------------------------------------------------------------------------------
    def _mine(self, u: Uri) -> bool:
        return self.server.is_myself_addr(u.host, u.port or (5061 if u.scheme == "sips" else 5060))

    def _routes(self, req: Request) -> list[tuple[str, Uri]]:
        """(URI text, URI) of every Route value; the URIs are shared: read them, never change."""
        values = req.get_values("route")
        if not values:
            return []
        seen = self._routes_seen
        return [_remembered(seen, v, _route_uri) for v in values]

    def _ruri(self, ctx: MsgContext, req: Request) -> Uri:
        """The R-URI parsed (shared, as ``_routes``): the request's own parse while the script
        has not changed it."""
        text = ctx.ruri
        if not text or text == req.uri:
            return req.parsed_uri
        return _remembered(self._uris_seen, text, parse_uri)

    @kemi(routes=Route.REQUEST)
    def loose_route(self, ctx: MsgContext) -> int:
        """Route by the Route headers: 1 routed (our Route removed, $du = next loose hop),
        -1 no Route (or only ours, initial request), -3 preloaded next hop of an initial request."""
        return self._loose_route(ctx, 0)

    @kemi()
    def loose_route_mode(self, ctx: MsgContext, mode: int) -> int:
        """loose_route with mode bits (1: skip the strict-router check of the R-URI)."""
        return self._loose_route(ctx, mode)

    def _loose_route(self, ctx: MsgContext, mode: int) -> int:
        req = ctx.msg  # read once (ctx.is_request and ctx.request are properties)
        if not isinstance(req, Request):
            return -1
        try:
            routes = self._routes(req)
            to_tag = req.to.tag
            ruri = self._ruri(ctx, req)
        except RemoteProtocolError:
            return -1
        extra = ctx.extra
        if extra:
            extra.pop("rr_route_params", None)
            extra.pop("rr_next_hop", None)
        if not routes:
            return -1
        removed = 0
        if not mode & 1 and ruri.is_sip and "lr" in ruri.params and self._mine(ruri):
            # RFC 3261 §16.4: a strict router put our Record-Route URI in the R-URI; the real
            # R-URI is the last Route.
            ctx.extra["rr_route_params"] = "".join(
                f";{k}" if v is None else f";{k}={v}" for k, v in ruri.params.items()
            )
            last_text, _ = routes[-1]
            ctx.ruri = last_text
            ctx.add_lump(_remove_last_route())
            routes = routes[:-1]
            if not routes:
                return 1
        first_text, first = routes[0]
        if first.is_sip and self._mine(first):
            removed = 1
            ctx.extra["rr_route_params"] = "".join(
                f";{k}" if v is None else f";{k}={v}" for k, v in first.params.items()
            )
            if "r2" in first.params and len(routes) > 1 and self._mine(routes[1][1]):
                removed = 2
            rest = routes[removed:]
            if not rest:
                ctx.add_lump(_remove_routes(removed))
                return 1 if to_tag else -1
            nxt_text, nxt = rest[0]
        else:
            nxt_text, nxt = first_text, first
            if not to_tag:
                ctx.dst_uri = nxt_text
                ctx.extra["rr_next_hop"] = True
                return -3
        if "lr" in nxt.params:
            ctx.dst_uri = nxt_text
            ctx.extra["rr_next_hop"] = True
            if removed:
                ctx.add_lump(_remove_routes(removed))
            return 1
        # The next hop is a strict router (RFC 3261 §16.6 step 7): it goes in the R-URI and the
        # R-URI goes to the end of the Route set.
        old = ctx.ruri or req.uri
        ctx.ruri = nxt_text
        ctx.extra["rr_next_hop"] = True
        ctx.add_lump(_remove_routes(removed + 1, append=old))
        return 1

    @kemi()
    def loose_route_preloaded(self, ctx: MsgContext) -> int:
        """1 only for an initial request whose first Route is not ours."""
        try:
            req = ctx.msg
            routes = self._routes(req) if isinstance(req, Request) else []
            if not routes or ctx.request.to.tag:
                return -1
        except RemoteProtocolError:
            return -1
        return -1 if self._mine(routes[0][1]) else 1

    @kemi()
    def check_route_param(self, ctx: MsgContext, regex: str) -> int:
        """check_route_param(regex) on the parameters of our Route URI (after loose_route)."""
        params = ctx.extra.get("rr_route_params")
        if params is None:
            return -1
        try:
            return 1 if re.search(regex, params) else -1
        except re.error:
            return -1

    @kemi()
    def is_direction(self, ctx: MsgContext, direction: str) -> int:
        """is_direction("downstream"|"upstream"): by the ftag of our Route (append_fromtag=1)."""
        params = ctx.extra.get("rr_route_params")
        if params is None:
            return -1
        m = re.search(r";ftag=([^;]*)", params)
        if m is None:
            return -1
        try:
            ftag = ctx.msg.from_.tag
        except RemoteProtocolError:
            return -1
        down = m.group(1) == ftag
        want = direction.strip().lower()
        if want == "downstream":
            return 1 if down else -1
        if want == "upstream":
            return -1 if down else 1
        return -1

    @kemi()
    def next_hop_route(self, ctx: MsgContext) -> int:
        """1 if the next hop comes from a Route header (after loose_route)."""
        return 1 if ctx.extra.get("rr_next_hop") else -1


def _remove_last_route() -> Lump:
    def lump(m: Message, original: Container[int]) -> None:
        for i in range(len(m.headers) - 1, -1, -1):
            h = m.headers[i]
            if h.key == "route":
                values = split_commas(h.value)
                if len(values) > 1:
                    m.headers[i] = Header(h.name, ", ".join(values[:-1]))
                else:
                    del m.headers[i]
                break

    return lump


MODULE = Rr
