"""The core KSR functions: ``KSR.*``, ``KSR.pv`` and ``KSR.hdr`` (Kamailio's core exports)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ksr.core.context import MsgContext, parse_header_block
from ksr.core.loglevels import NOTICE
from ksr.core.module import Module
from ksr.kemi.registry import XVal, kemi
from ksr.sip.headers import header_key
from ksr.sip.message import Header, Message, Request
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

    @kemi()
    def dbg(self, ctx: MsgContext, text: str) -> None:
        """Log text at DEBUG level."""
        self._log(logging.DEBUG, text)

    @kemi()
    def info(self, ctx: MsgContext, text: str) -> None:
        """Log text at INFO level."""
        self._log(logging.INFO, text)

    @kemi()
    def notice(self, ctx: MsgContext, text: str) -> None:
        """Log text at NOTICE level."""
        self._log(NOTICE, text)

    @kemi()
    def warn(self, ctx: MsgContext, text: str) -> None:
        """Log text at WARNING level."""
        self._log(logging.WARNING, text)

    @kemi()
    def err(self, ctx: MsgContext, text: str) -> None:
        """Log text at ERROR level."""
        self._log(logging.ERROR, text)

    @kemi()
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
        return ctx.method == method

    test.__doc__ = f"True for {method} (CSeq method for replies)."
    test.__annotations__ = {"ctx": MsgContext, "return": bool}
    return kemi(name=f"is_{method}")(test)


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


class PvExports(Module):
    """KSR.pv: read and write pseudo-variables."""

    name = "core.pv"
    kemi_name = "pv"

    @kemi()
    def get(self, ctx: MsgContext, spec: str) -> XVal:
        """Value of a PV: int for integer PVs, else string; None/nil for $null."""
        return self.server.pv.get(ctx, spec)

    @kemi()
    def gete(self, ctx: MsgContext, spec: str) -> XVal:
        """Like get, but "" instead of null."""
        v = self.server.pv.get(ctx, spec)
        return "" if v is None else v

    @kemi()
    def getw(self, ctx: MsgContext, spec: str) -> XVal:
        """Like get, but "<null>" instead of null."""
        v = self.server.pv.get(ctx, spec)
        return "<null>" if v is None else v

    @kemi()
    def geti(self, ctx: MsgContext, spec: str) -> int:
        """Value as int (0 if null or not a number)."""
        v = self.server.pv.get(ctx, spec)
        try:
            return int(v) if v is not None else 0
        except ValueError:
            return 0

    @kemi()
    def getl(self, ctx: MsgContext, spec: str) -> XVal:
        """Value as long integer; 0 if null."""
        return self.geti(ctx, spec)

    @kemi()
    def getvn(self, ctx: MsgContext, spec: str, default: int) -> XVal:
        """Value, or the default int if null."""
        v = self.server.pv.get(ctx, spec)
        return default if v is None else v

    @kemi()
    def getvs(self, ctx: MsgContext, spec: str, default: str) -> XVal:
        """Value, or the default string if null."""
        v = self.server.pv.get(ctx, spec)
        return default if v is None else v

    @kemi()
    def seti(self, ctx: MsgContext, spec: str, value: int) -> bool:
        """Assign an integer to a writable PV."""
        return self.server.pv.set(ctx, spec, value)

    @kemi()
    def setl(self, ctx: MsgContext, spec: str, value: int) -> bool:
        """Assign a long integer to a writable PV."""
        return self.server.pv.set(ctx, spec, value)

    @kemi()
    def sets(self, ctx: MsgContext, spec: str, value: str) -> bool:
        """Assign a string to a writable PV."""
        return self.server.pv.set(ctx, spec, value)

    @kemi()
    def unset(self, ctx: MsgContext, spec: str) -> bool:
        """Assign $null (delete an AVP, reset $du; $var becomes 0)."""
        return self.server.pv.set(ctx, spec, None)

    @kemi()
    def is_null(self, ctx: MsgContext, spec: str) -> bool:
        """True if the PV is null (also for invalid names)."""
        return self.server.pv.get(ctx, spec) is None


def _insert_at(m: Message, headers: list[Header], index: int) -> None:
    m.headers[index:index] = headers


class HdrExports(Module):
    """KSR.hdr: header changes (applied when the message is sent, as Kamailio's lumps)."""

    name = "core.hdr"
    kemi_name = "hdr"

    @kemi()
    def append(self, ctx: MsgContext, text: str) -> int:
        """Append raw header text ("Name: value\\r\\n") after the last header."""
        hdrs = parse_header_block(text)
        if not hdrs:
            return -1
        ctx.add_lump(lambda m, orig: m.headers.extend(hdrs))
        return 1

    @kemi()
    def insert(self, ctx: MsgContext, text: str) -> int:
        """Insert raw header text before the first header."""
        hdrs = parse_header_block(text)
        if not hdrs:
            return -1
        ctx.add_lump(lambda m, orig: _insert_at(m, hdrs, 0))
        return 1

    @kemi()
    def append_after(self, ctx: MsgContext, text: str, hname: str) -> int:
        """Insert text after the first header named hname."""
        return self._relative(ctx, text, hname, 1)

    @kemi()
    def insert_before(self, ctx: MsgContext, text: str, hname: str) -> int:
        """Insert text before the first header named hname."""
        return self._relative(ctx, text, hname, 0)

    def _relative(self, ctx: MsgContext, text: str, hname: str, offset: int) -> int:
        hdrs = parse_header_block(text)
        key = header_key(hname)
        if not hdrs or not ctx.msg.has(key):
            return -1

        def lump(m: Message, orig: frozenset[int]) -> None:
            for i, h in enumerate(m.headers):
                if h.key == key:
                    _insert_at(m, hdrs, i + offset)
                    return

        ctx.add_lump(lump)
        return 1

    @kemi()
    def remove(self, ctx: MsgContext, name: str) -> int:
        """Remove all headers with this name (compact forms too). 1 even if none."""
        key = header_key(name)

        def lump(m: Message, orig: frozenset[int]) -> None:
            m.headers = [h for h in m.headers if h.key != key or id(h) not in orig]

        ctx.add_lump(lump)
        return 1

    @kemi()
    def rmappend(self, ctx: MsgContext, hrm: str, text: str) -> int:
        """Remove headers named hrm, then append text."""
        self.remove(ctx, hrm)
        return self.append(ctx, text)

    @kemi()
    def rminsert(self, ctx: MsgContext, hrm: str, text: str) -> int:
        """Remove headers named hrm, then insert text at the top."""
        self.remove(ctx, hrm)
        return self.insert(ctx, text)

    @kemi()
    def is_present(self, ctx: MsgContext, name: str) -> int:
        """1 if a header with this name exists in the received message, -1 otherwise."""
        return 1 if ctx.msg.has(name) else -1

    @kemi()
    def append_to_reply(self, ctx: MsgContext, text: str) -> int:
        """Add raw header text to the next locally generated reply."""
        if not parse_header_block(text):
            return -1
        ctx.reply_lumps.append(text)
        return 1

    @kemi()
    def get(self, ctx: MsgContext, name: str) -> XVal:
        """Body of the first header with that name; None/nil if absent."""
        return ctx.msg.get(name)

    @kemi()
    def gete(self, ctx: MsgContext, name: str) -> XVal:
        """Like get, "" if absent."""
        return ctx.msg.get(name) or ""

    @kemi()
    def getw(self, ctx: MsgContext, name: str) -> XVal:
        """Like get, "<null>" if absent."""
        v = ctx.msg.get(name)
        return "<null>" if v is None else v

    @kemi()
    def get_idx(self, ctx: MsgContext, name: str, idx: int) -> XVal:
        """Body of the idx-th header with that name (negative counts from the end)."""
        values = ctx.msg.get_all(name)
        try:
            return values[idx]
        except IndexError:
            return None

    @kemi()
    def gete_idx(self, ctx: MsgContext, name: str, idx: int) -> XVal:
        """Like get_idx, "" if absent."""
        v = self.get_idx(ctx, name, idx)
        return "" if v is None else v

    @kemi()
    def getw_idx(self, ctx: MsgContext, name: str, idx: int) -> XVal:
        """Like get_idx, "<null>" if absent."""
        v = self.get_idx(ctx, name, idx)
        return "<null>" if v is None else v

    @kemi()
    def match_content(self, ctx: MsgContext, hname: str, op: str, value: str, which: str) -> bool:
        """match_content(hname, op eq/ne/sw/in, value, which f/l/a/o): compare header bodies."""
        values = ctx.msg.get_all(hname)
        if not values:
            return False
        v = value.lower()

        def match(x: str) -> bool:
            x = x.lower()
            if op == "eq":
                return x == v
            if op == "ne":
                return x != v
            if op == "sw":
                return x.startswith(v)
            if op == "in":
                return v in x
            return False

        if which.startswith("f"):
            return match(values[0])
        if which.startswith("l"):
            return match(values[-1])
        if which.startswith("a"):
            return all(match(x) for x in values)
        return any(match(x) for x in values)


__all__ = ["CoreExports", "HdrExports", "PvExports", "Request"]
