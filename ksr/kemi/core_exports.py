"""The core KSR functions ``KSR.*`` (Kamailio's core exports); ``KSR.pv`` and ``KSR.hdr`` are in
pv_exports.py and hdr_exports.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ksr.core.context import MsgContext
from ksr.core.loglevels import NOTICE
from ksr.core.module import Module
from ksr.kemi.registry import kemi
from ksr.sip.message import Request
from ksr.sip.uri import parse_uri

log = logging.getLogger("ksr.script")

# Letters of is_method_in (Kamailio's core).
METHOD_LETTERS = {
    "I": "INVITE",
    "A": "ACK",
    "B": "BYE",
    "C": "CANCEL",
    "M": "MESSAGE",
    "R": "REGISTER",
    "E": "PRACK",
    "P": "PUBLISH",
    "S": "SUBSCRIBE",
    "N": "NOTIFY",
    "O": "OPTIONS",
    "F": "REFER",
    "G": "GET",
    "U": "UPDATE",
    "K": "KDMQ",
    "D": "DELETE",
    "T": "POST",
    "V": "PUT",
}
PROTO_LETTERS = {"u": "udp", "t": "tcp", "e": "tls", "s": "sctp", "v": "ws", "w": "wss"}
LOG_LEVELS = {
    "dbg": logging.DEBUG,
    "info": logging.INFO,
    "notice": NOTICE,
    "warn": logging.WARNING,
    "err": logging.ERROR,
    "crit": logging.CRITICAL,
}


def _flag_ok(idx: int) -> bool:
    return 0 <= idx <= 31


class CoreExports(Module):
    """KSR.* functions that need no module."""

    name = "core"
    kemi_name = ""

    # -- logging ----------------------------------------------------------------------------
    def _log(self, level: int, text: str) -> None:
        if log.isEnabledFor(level):
            log.log(level, "%s", text.rstrip("\n"))

    @kemi(inline=("log", logging.DEBUG))
    def dbg(self, ctx: MsgContext, text: str) -> None:
        """Log text at DEBUG level."""
        self._log(logging.DEBUG, text)

    @kemi(inline=("log", logging.INFO))
    def info(self, ctx: MsgContext, text: str) -> None:
        """Log text at INFO level."""
        self._log(logging.INFO, text)

    @kemi(inline=("log", NOTICE))
    def notice(self, ctx: MsgContext, text: str) -> None:
        """Log text at NOTICE level."""
        self._log(NOTICE, text)

    @kemi(inline=("log", logging.WARNING))
    def warn(self, ctx: MsgContext, text: str) -> None:
        """Log text at WARNING level."""
        self._log(logging.WARNING, text)

    @kemi(inline=("log", logging.ERROR))
    def err(self, ctx: MsgContext, text: str) -> None:
        """Log text at ERROR level."""
        self._log(logging.ERROR, text)

    @kemi(inline=("log", logging.CRITICAL))
    def crit(self, ctx: MsgContext, text: str) -> None:
        """Log text at CRITICAL level."""
        self._log(logging.CRITICAL, text)

    @kemi()
    def log(self, ctx: MsgContext, level: str, text: str) -> None:
        """log(level, text): level is dbg/info/notice/warn/err/crit; unknown logs as err."""
        self._log(LOG_LEVELS.get(level.lower(), logging.ERROR), text)

    @kemi()
    def get_debug(self, ctx: MsgContext) -> int:
        """Current debug (log) level."""
        return self.server.config.core.debug

    # -- drop / flags -----------------------------------------------------------------------
    @kemi()
    def set_drop(self, ctx: MsgContext) -> None:
        """Set the DROP flag (reply not forwarded, branch not sent); does not stop the script."""
        ctx.drop = True

    @kemi()
    def setflag(self, ctx: MsgContext, idx: int) -> bool:
        """Set message flag idx (0..31)."""
        if not _flag_ok(idx):
            return False
        ctx.flags |= 1 << idx
        return True

    @kemi()
    def resetflag(self, ctx: MsgContext, idx: int) -> bool:
        """Reset message flag idx."""
        if not _flag_ok(idx):
            return False
        ctx.flags &= ~(1 << idx)
        return True

    @kemi()
    def isflagset(self, ctx: MsgContext, idx: int) -> bool:
        """Test message flag idx."""
        return _flag_ok(idx) and bool(ctx.flags & (1 << idx))

    @kemi()
    def setbflag(self, ctx: MsgContext, idx: int) -> bool:
        """Set branch flag idx on branch 0."""
        return self.setbiflag(ctx, idx, 0)

    @kemi()
    def resetbflag(self, ctx: MsgContext, idx: int) -> bool:
        """Reset branch flag idx on branch 0."""
        return self.resetbiflag(ctx, idx, 0)

    @kemi()
    def isbflagset(self, ctx: MsgContext, idx: int) -> bool:
        """Test branch flag idx on branch 0."""
        return self.isbiflagset(ctx, idx, 0)

    @kemi()
    def setbiflag(self, ctx: MsgContext, idx: int, branch: int) -> bool:
        """setbiflag(idx, branch): set a branch flag on a given branch."""
        if not _flag_ok(idx):
            return False
        if branch == 0:
            ctx.bflags |= 1 << idx
        elif 0 < branch <= len(ctx.branches):
            ctx.branches[branch - 1].flags |= 1 << idx
        else:
            return False
        return True

    @kemi()
    def resetbiflag(self, ctx: MsgContext, idx: int, branch: int) -> bool:
        """resetbiflag(idx, branch)."""
        if not _flag_ok(idx):
            return False
        if branch == 0:
            ctx.bflags &= ~(1 << idx)
        elif 0 < branch <= len(ctx.branches):
            ctx.branches[branch - 1].flags &= ~(1 << idx)
        else:
            return False
        return True

    @kemi()
    def isbiflagset(self, ctx: MsgContext, idx: int, branch: int) -> bool:
        """isbiflagset(idx, branch)."""
        if not _flag_ok(idx):
            return False
        if branch == 0:
            return bool(ctx.bflags & (1 << idx))
        if 0 < branch <= len(ctx.branches):
            return bool(ctx.branches[branch - 1].flags & (1 << idx))
        return False

    @kemi()
    def setsflag(self, ctx: MsgContext, idx: int) -> bool:
        """Set script flag idx."""
        if not _flag_ok(idx):
            return False
        ctx.sflags |= 1 << idx
        return True

    @kemi()
    def resetsflag(self, ctx: MsgContext, idx: int) -> bool:
        """Reset script flag idx."""
        if not _flag_ok(idx):
            return False
        ctx.sflags &= ~(1 << idx)
        return True

    @kemi()
    def issflagset(self, ctx: MsgContext, idx: int) -> bool:
        """Test script flag idx."""
        return _flag_ok(idx) and bool(ctx.sflags & (1 << idx))

    # -- R-URI and destination ---------------------------------------------------------------
    @kemi()
    def seturi(self, ctx: MsgContext, uri: str) -> bool:
        """Rewrite the whole R-URI."""
        try:
            parse_uri(uri)
        except Exception:
            return False
        ctx.ruri = uri
        return True

    @kemi()
    def setuser(self, ctx: MsgContext, user: str) -> bool:
        """Rewrite the user part of the R-URI."""
        return self.server.pv.set(ctx, "$rU", user)

    @kemi()
    def sethost(self, ctx: MsgContext, host: str) -> bool:
        """Rewrite the host part of the R-URI."""
        return self.server.pv.set(ctx, "$rd", host)

    @kemi()
    def setdsturi(self, ctx: MsgContext, uri: str) -> bool:
        """Set the destination URI ($du): the next hop."""
        ctx.dst_uri = uri or None
        return True

    @kemi()
    def resetdsturi(self, ctx: MsgContext) -> bool:
        """Clear $du."""
        ctx.dst_uri = None
        return True

    @kemi()
    def isdsturiset(self, ctx: MsgContext) -> bool:
        """True if $du is set."""
        return ctx.dst_uri is not None

    @kemi()
    def force_rport(self, ctx: MsgContext) -> bool:
        """Send replies to the source IP:port as if the top Via had ;rport."""
        ctx.force_rport = True
        self.server.apply_rport(ctx)
        return True

    @kemi()
    def add_local_rport(self, ctx: MsgContext) -> bool:
        """Add ;rport to the Via that ksr adds to forwarded requests."""
        ctx.local_rport = True
        return True

    @kemi()
    def set_advertised_address(self, ctx: MsgContext, addr: str) -> int:
        """Advertised address for Via/Record-Route of this message."""
        ctx.advertised_address = addr or None
        return 1

    @kemi()
    def set_advertised_port(self, ctx: MsgContext, port: str) -> int:
        """Advertised port for this message."""
        ctx.advertised_port = port or None
        return 1

    # -- forwarding ------------------------------------------------------------------------
    @kemi()
    def forward(self, ctx: MsgContext) -> int:
        """Stateless forward to $du or the R-URI: 1 ok, -1 error."""
        return 1 if self.server.forward_stateless(ctx, None) else -1

    @kemi()
    def forward_uri(self, ctx: MsgContext, uri: str) -> int:
        """Stateless forward to the given URI: 1 ok, -1 error."""
        return 1 if self.server.forward_stateless(ctx, uri) else -1

    @kemi()
    def set_forward_close(self, ctx: MsgContext) -> bool:
        """Close the TCP connection after forwarding."""
        ctx.forward_close = True
        return True

    @kemi()
    def set_forward_no_connect(self, ctx: MsgContext) -> bool:
        """Do not open a new TCP connection when forwarding."""
        ctx.forward_no_connect = True
        return True

    @kemi()
    def set_reply_close(self, ctx: MsgContext) -> bool:
        """Close the TCP connection after sending the reply."""
        ctx.reply_close = True
        return True

    @kemi()
    def set_reply_no_connect(self, ctx: MsgContext) -> bool:
        """Do not open a new TCP connection to send replies."""
        ctx.reply_no_connect = True
        return True

    @kemi()
    def add_tcp_alias(self, ctx: MsgContext, port: int) -> int:
        """Add a TCP alias for the given port on the current connection."""
        return 1 if ctx.proto != "udp" else -1

    @kemi()
    def add_tcp_alias_via(self, ctx: MsgContext) -> int:
        """Add a TCP alias using the port of the top Via."""
        return 1 if ctx.proto != "udp" else -1

    # -- myself ----------------------------------------------------------------------------
    @kemi()
    def is_myself(self, ctx: MsgContext, uri: str) -> bool:
        """True if the URI or host is one of our listen addresses or aliases."""
        return self.server.is_myself_text(uri)

    @kemi()
    def is_myself_ruri(self, ctx: MsgContext) -> bool:
        """is_myself() on the R-URI; false for replies."""
        return ctx.is_request and ctx.ruri is not None and self.server.is_myself_text(ctx.ruri)

    @kemi()
    def is_myself_duri(self, ctx: MsgContext) -> bool:
        """is_myself() on $du; false if unset."""
        return ctx.dst_uri is not None and self.server.is_myself_text(ctx.dst_uri)

    @kemi()
    def is_myself_nhuri(self, ctx: MsgContext) -> bool:
        """is_myself() on the next hop ($du, else R-URI)."""
        nh = ctx.next_hop()
        return nh is not None and self.server.is_myself_text(nh)

    @kemi()
    def is_myself_furi(self, ctx: MsgContext) -> bool:
        """is_myself() on the From URI."""
        v = self.server.pv.get(ctx, "$fu")
        return isinstance(v, str) and self.server.is_myself_text(v)

    @kemi()
    def is_myself_turi(self, ctx: MsgContext) -> bool:
        """is_myself() on the To URI."""
        v = self.server.pv.get(ctx, "$tu")
        return isinstance(v, str) and self.server.is_myself_text(v)

    @kemi()
    def is_myself_suri(self, ctx: MsgContext) -> bool:
        """is_myself() on the source address."""
        return self.server.is_myself_addr(ctx.src_ip, ctx.src_port, ctx.proto)

    @kemi()
    def is_myself_srcip(self, ctx: MsgContext) -> bool:
        """True if the source IP is one of our addresses."""
        return self.server.is_local_ip(ctx.src_ip)

    # -- methods and protocols ---------------------------------------------------------------
    @kemi()
    def is_method(self, ctx: MsgContext, method: str) -> bool:
        """True if the method (CSeq method for replies) is one of a "|"-separated list."""
        m = ctx.method
        return any(m == x.strip().upper() or m == x.strip() for x in method.split("|"))

    @kemi()
    def is_method_in(self, ctx: MsgContext, letters: str) -> bool:
        """True if the method matches any letter (I=INVITE A=ACK B=BYE C=CANCEL ...)."""
        m = ctx.method
        return any(METHOD_LETTERS.get(ch) == m for ch in letters)

    @kemi()
    def is_proto(self, ctx: MsgContext, letters: str) -> bool:
        """u=UDP t=TCP e=TLS s=SCTP v=WS w=WSS: true if the receiving proto matches any."""
        return any(PROTO_LETTERS.get(ch) == ctx.proto for ch in letters)

    @kemi()
    def is_IPv4(self, ctx: MsgContext) -> bool:
        """The local receiving socket is IPv4."""
        return ":" not in ctx.socket.ip

    @kemi()
    def is_IPv6(self, ctx: MsgContext) -> bool:
        """The local receiving socket is IPv6."""
        return ":" in ctx.socket.ip

    def _next_proto(self, ctx: MsgContext) -> str:
        if not ctx.is_request:
            vias = ctx.msg.vias
            return vias[1].transport.lower() if len(vias) > 1 else ""
        nh = ctx.next_hop()
        try:
            u = parse_uri(nh) if nh else None
        except Exception:
            return ""
        if u is None:
            return ""
        return u.transport or ("tls" if u.scheme == "sips" else "udp")

    def _next_host(self, ctx: MsgContext) -> str:
        nh = ctx.next_hop()
        try:
            return parse_uri(nh).host if nh else ""
        except Exception:
            return ""

    @kemi()
    def is_src_port(self, ctx: MsgContext, port: int) -> bool:
        """The source port equals port."""
        return ctx.src_port == port

    @kemi()
    def is_dst_port(self, ctx: MsgContext, port: int) -> bool:
        """The local receiving port equals port."""
        return ctx.socket.port == port

    @kemi()
    def to_IPv4(self, ctx: MsgContext) -> bool:
        """The next hop address is IPv4."""
        return ":" not in self._next_host(ctx)

    @kemi()
    def to_IPv6(self, ctx: MsgContext) -> bool:
        """The next hop address is IPv6."""
        return ":" in self._next_host(ctx)

    @kemi(name="route")
    def route_(self, ctx: MsgContext, name: str) -> int:
        """Run a native route block: ksr has none, so -1."""
        return -1


def _make_method_test(method: str) -> Callable[..., Any]:
    def test(self: CoreExports, ctx: MsgContext) -> bool:
        m = ctx.msg
        if type(m) is Request:  # ctx.method without its property call (a request's own)
            return m.method == method
        return ctx.method == method

    test.__doc__ = f"True for {method} (CSeq method for replies)."
    test.__annotations__ = {"ctx": MsgContext, "return": bool}
    return kemi(name=f"is_{method}", inline=("method", method))(test)


def _make_proto_test(name: str, protos: tuple[str, ...], to: bool) -> Callable[..., Any]:
    def test(self: CoreExports, ctx: MsgContext) -> bool:
        p = self._next_proto(ctx) if to else ctx.proto
        return p in protos

    test.__doc__ = ("Next hop" if to else "Received") + f" over {'/'.join(protos).upper()}."
    test.__annotations__ = {"ctx": MsgContext, "return": bool}
    return kemi(name=name)(test)


for _m in (
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "SUBSCRIBE",
    "PUBLISH",
    "NOTIFY",
    "REFER",
    "INFO",
    "UPDATE",
    "PRACK",
    "MESSAGE",
    "KDMQ",
    "GET",
    "POST",
    "PUT",
    "DELETE",
):
    setattr(CoreExports, f"is_{_m}", _make_method_test(_m))
for _n, _p in (
    ("UDP", ("udp",)),
    ("TCP", ("tcp",)),
    ("TLS", ("tls",)),
    ("SCTP", ("sctp",)),
    ("WS", ("ws",)),
    ("WSS", ("wss",)),
    ("WSX", ("ws", "wss")),
    ("TCPX", ("tcp", "tls", "ws", "wss")),
):
    setattr(CoreExports, f"is_{_n}", _make_proto_test(f"is_{_n}", _p, False))
    if _n != "TCPX":
        setattr(CoreExports, f"to_{_n}", _make_proto_test(f"to_{_n}", _p, True))
