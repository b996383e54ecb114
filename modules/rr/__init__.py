"""rr: Record-Route and Route processing (RFC 3261 §16.4, §16.6 step 4, §16.12; RFC 5658 double RR)."""

from __future__ import annotations

import re
from collections.abc import Callable, Container

from ksr.core.context import Lump, MsgContext, SocketInfo, SocketLump
from ksr.core.module import ModParams, Module
from ksr.kemi.registry import Route, kemi
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.message import Header, Message, Request

from .api import RrApi
from .route import RR_LUMP, Router, add_record_route, ftag_param


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


class Rr(Module):
    name = "rr"
    Params = RrParams

    def init(self) -> None:
        # the parses and addresses kept between requests, and the work on them (compiled)
        self.router = Router(self.server.is_myself_addr)
        p = self.params
        self.router.full_lr = bool(p.enable_full_lr)
        self.router.fromtag = bool(p.append_fromtag)
        self.router.double = bool(p.enable_double_rr)

    def api(self) -> RrApi:
        return RrApi(self)

    # -- Record-Route ----------------------------------------------------------------------------
    def _lr(self) -> str:
        return ";lr=on" if self.params.enable_full_lr else ";lr"

    def _ftag(self, ctx: MsgContext) -> str:
        return ftag_param(ctx) if self.params.append_fromtag else ""

    # via: no user parameters by default
    @kemi(
        routes=Route.REQUEST | Route.BRANCH | Route.FAILURE,
        via=lambda rr: rr.router.auto_record_route,
    )
    def record_route(self, ctx: MsgContext) -> int:
        """Add Record-Route (two when the request leaves on another transport or address)."""
        return self.router.auto_record_route(ctx, "")

    @kemi(routes=Route.REQUEST | Route.BRANCH | Route.FAILURE)
    def record_route_params(self, ctx: MsgContext, params: str) -> int:
        """record_route_params(";p=v"): Record-Route with extra URI parameters."""
        return self.router.auto_record_route(ctx, params)

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

        return add_record_route(ctx, build)

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
    @kemi(routes=Route.REQUEST, via=lambda rr: rr.router.loose_route)  # mode 0 by default
    def loose_route(self, ctx: MsgContext) -> int:
        """Route by the Route headers: 1 routed (our Route removed, $du = next loose hop),
        -1 no Route (or only ours, initial request), -3 preloaded next hop of an initial request."""
        return self.router.loose_route(ctx, 0)

    @kemi()
    def loose_route_mode(self, ctx: MsgContext, mode: int) -> int:
        """loose_route with mode bits (1: skip the strict-router check of the R-URI)."""
        return self.router.loose_route(ctx, mode)

    @kemi()
    def loose_route_preloaded(self, ctx: MsgContext) -> int:
        """1 only for an initial request whose first Route is not ours."""
        try:
            req = ctx.msg
            routes = self.router.routes(req) if isinstance(req, Request) else []
            if not routes or ctx.request.to.tag:
                return -1
        except RemoteProtocolError:
            return -1
        return -1 if self.router.mine(routes[0][1]) else 1

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


MODULE = Rr
