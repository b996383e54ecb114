"""nathelper: detect and fix NATed user agents (Contact rewriting, alias parameters, SDP)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Container

import trio

from ksr.core.config import ConfigError
from ksr.core.context import MsgContext
from ksr.core.lumps import edit_first_name_addr, rewrite_headers
from ksr.core.module import ModParams, Module
from ksr.kemi.registry import kemi
from ksr.modules.usrloc.api import UsrlocApi
from ksr.sip.headers import NameAddr, parse_name_addr, split_commas
from ksr.sip.hostport import format_hostport
from ksr.sip.message import Message
from ksr.sip.uri import parse_uri

from .natping import NatPinger

# Kamailio's numeric transport ids, used inside ;alias=ip~port~proto
PROTO_IDS = {"udp": 1, "tcp": 2, "tls": 3, "sctp": 4, "ws": 5, "wss": 6}
PROTO_NAMES = {v: k for k, v in PROTO_IDS.items()}
_PRIVATE_NETS = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
        "fe80::/10",
    )
]
_PRIVATE_CACHE_SIZE = 4096
_SDP_C = re.compile(rb"^c=IN IP([46]) (\S+)", re.M)
_SDP_O = re.compile(rb"^(o=\S+ \S+ \S+ IN IP[46] )(\S+)", re.M)


def is_private(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return False
    return any(addr in net for net in _PRIVATE_NETS)


class NathelperParams(ModParams):
    # Kamailio's default is empty; ksr names the AVP its registrar reads by default.
    received_avp: str = "$avp(RECEIVED)"
    natping_interval: int = 0
    ping_nated_only: int = 0
    sipping_bflag: int = -1
    sipping_from: str = ""
    sipping_method: str = "OPTIONS"
    nortpproxy_str: str = "a=nortpproxy:yes"
    alias_name: str = "alias"
    force_socket: str = ""
    keepalive_timeout: int = 0
    # 1: ping only the contacts this node saved (their server_id is this node's), and those of
    # a node of the cluster that died (ksr/core/cluster_nodes.py)
    filter_server_id: int = 0


class Nathelper(Module):
    name = "nathelper"
    Params = NathelperParams

    def init(self) -> None:
        # is_private() answers per address, remembered: ipaddress parsing costs microseconds
        # and nat_uac_test asks about the same few addresses on every message
        self._private: dict[str, bool] = {}
        self.pinger: NatPinger | None = None
        p = self.params
        if p.natping_interval <= 0:
            return
        usrloc = self.optional("usrloc", UsrlocApi)
        if usrloc is None:
            raise ConfigError(
                "nathelper: natping_interval needs the usrloc module", self.server.config.source
            )
        if p.sipping_bflag >= 0 and not p.sipping_from:
            raise ConfigError(
                "nathelper: sipping_bflag is set but sipping_from is empty",
                self.server.config.source,
            )
        self.pinger = NatPinger(self.server, p, usrloc, self._force_socket())
        self.server.reply_handlers.append(self.pinger.absorb_reply)

    def _force_socket(self) -> str:
        """force_socket as a socket name (``udp:ip:port``), or empty."""
        spec = self.params.force_socket.strip()
        if not spec:
            return ""
        from ksr.core.listen import parse_listen

        try:
            sock = parse_listen(spec)
        except ValueError as err:
            raise ConfigError(
                f"nathelper: force_socket: {err}", self.server.config.source
            ) from None
        return str(sock)

    async def start(self, nursery: trio.Nursery) -> None:
        pinger = self.pinger
        if pinger is None:
            return
        if not self.server.shared.leader:
            return  # worker processes share one location table: worker 0 pings it
        self.server.timers.every(1.0, pinger.tick, name="nathelper natping")

    def _is_private(self, ip: str) -> bool:
        hit = self._private.get(ip)
        if hit is None:
            if len(self._private) >= _PRIVATE_CACHE_SIZE:
                self._private.clear()  # hostile input cannot grow it
            hit = self._private[ip] = is_private(ip)
        return hit

    # -- helpers -------------------------------------------------------------------------------
    def _contact(self, ctx: MsgContext) -> tuple[str, int | None, str] | None:
        """(host, port, uri text) of the first Contact, or None."""
        v = ctx.msg.get("contact")
        if not v or v.strip() == "*":
            return None
        try:
            na = parse_name_addr(split_commas(v)[0])
            u = na.uri
        except Exception:
            return None
        if not u.is_sip:
            return None
        return u.host, u.port, na.uri_text

    def _rewrite_contact_uri(self, ctx: MsgContext, change: Callable[[str], str]) -> bool:
        if self._contact(ctx) is None:
            return False

        def edit(na: NameAddr) -> None:
            na.uri_text = change(na.uri_text)

        ctx.add_lump(rewrite_headers("contact", edit_first_name_addr(edit), first_only=True))
        return True

    def _source_hostport(self, ctx: MsgContext) -> str:
        return format_hostport(ctx.src_ip, ctx.src_port)

    # -- detection -------------------------------------------------------------------------------
    @kemi()
    def nat_uac_test(self, ctx: MsgContext, flags: int) -> int:
        """nat_uac_test(flags): 1 Contact private IP, 2 Via IP != source, 4 top Via private IP,
        8 SDP private IP, 16 source port != Via port, 32 source IP private, 64 WebSocket,
        128 Contact port != source port, 256 SDP IP != source; 1 if any test matches."""
        m = ctx.msg
        contact = self._contact(ctx)
        try:
            via = m.top_via
        except Exception:
            via = None
        if flags & 1 and contact and self._is_private(contact[0]):
            return 1
        if flags & 2 and via is not None and via.host != ctx.src_ip:
            return 1
        if flags & 4 and via is not None and self._is_private(via.host):
            return 1
        if flags & 8 and any(self._is_private(ip.decode()) for _, ip in _SDP_C.findall(m.body)):
            return 1
        if flags & 16 and via is not None and (via.port or 5060) != ctx.src_port:
            return 1
        if flags & 32 and self._is_private(ctx.src_ip):
            return 1
        if flags & 64 and ctx.proto in ("ws", "wss"):
            return 1
        if flags & 128 and contact and (contact[1] or 5060) != ctx.src_port:
            return 1
        if flags & 256 and any(ip.decode() != ctx.src_ip for _, ip in _SDP_C.findall(m.body)):
            return 1
        return -1

    @kemi()
    def is_rfc1918(self, ctx: MsgContext, ip: str) -> int:
        """1 if ip is a private (RFC 1918 / RFC 6598) address, -1 otherwise."""
        return 1 if self._is_private(ip) else -1

    # -- fixing ----------------------------------------------------------------------------------
    @kemi()
    def fix_nated_contact(self, ctx: MsgContext) -> int:
        """Rewrite the Contact URI's host:port with the source address of the message."""
        hp = self._source_hostport(ctx)

        def change(uri_text: str) -> str:
            u = parse_uri(uri_text)
            host, _, port = hp.rpartition(":")
            u.host, u.port = host.strip("[]"), int(port)
            return str(u)

        return 1 if self._rewrite_contact_uri(ctx, change) else -1

    @kemi()
    def fix_nated_register(self, ctx: MsgContext) -> int:
        """Store the source address as a URI in received_avp (the registrar saves it)."""
        if not self.params.received_avp:
            return -1
        uri = f"sip:{self._source_hostport(ctx)}"
        if ctx.proto != "udp":
            uri += f";transport={ctx.proto}"
        return 1 if self.server.pv.set(ctx, self.params.received_avp, uri) else -1

    def _alias_value(self, ctx: MsgContext) -> str:
        return f"{ctx.src_ip}~{ctx.src_port}~{PROTO_IDS.get(ctx.proto, 1)}"

    @kemi()
    def set_contact_alias(self, ctx: MsgContext) -> int:
        """Add ;alias=ip~port~proto (the source address) to the Contact URI."""
        alias = self._alias_value(ctx)
        name = self.params.alias_name

        def change(uri_text: str) -> str:
            u = parse_uri(uri_text)
            u.params[name] = alias
            return str(u)

        return 1 if self._rewrite_contact_uri(ctx, change) else -1

    @kemi()
    def set_contact_alias_trim(self, ctx: MsgContext) -> int:
        """Like set_contact_alias, replacing an alias the Contact already has."""
        return self.set_contact_alias(ctx)

    @kemi()
    def add_contact_alias(self, ctx: MsgContext) -> int:
        """Add the alias parameter only if the source differs from the Contact address:
        1 added, 2 nothing to do (no Contact header, or the Contact is the source address),
        -1 error (a Contact that does not parse, ``*``)."""
        if not ctx.msg.has("contact"):
            return 2  # Kamailio: an ACK or BYE without Contact is fine as it is
        c = self._contact(ctx)
        if c is None:
            return -1
        if c[0] == ctx.src_ip and (c[1] or 5060) == ctx.src_port and ctx.proto == "udp":
            return 2
        return self.set_contact_alias(ctx)

    @kemi()
    def add_contact_alias_addr(self, ctx: MsgContext, ip: str, port: str, proto: str) -> int:
        """add_contact_alias_addr(ip, port, proto): add an alias with the given address."""
        pid = PROTO_IDS.get(proto.lower(), 1)
        name = self.params.alias_name

        def change(uri_text: str) -> str:
            u = parse_uri(uri_text)
            u.params[name] = f"{ip}~{port}~{pid}"
            return str(u)

        return 1 if self._rewrite_contact_uri(ctx, change) else -1

    def _alias_target(self, uri_text: str, last: bool) -> tuple[str, str] | None:
        """(R-URI without alias, destination URI) for an aliased URI."""
        try:
            u = parse_uri(uri_text)
        except Exception:
            return None
        alias = u.params.get(self.params.alias_name)
        if not alias:
            return None
        parts = alias.split("~")
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError("bad alias")
        ip, port, pid = parts
        proto = PROTO_NAMES.get(int(pid) if pid.isdigit() else 1, "udp")
        del u.params[self.params.alias_name]
        du = f"sip:{format_hostport(ip, port)}" + ("" if proto == "udp" else f";transport={proto}")
        return str(u), du

    @kemi()
    def handle_ruri_alias(self, ctx: MsgContext) -> int:
        """If the R-URI has an alias parameter: remove it and set $du from it. 1 done, 2 none."""
        return self.handle_ruri_alias_mode(ctx, 0)

    @kemi()
    def handle_ruri_alias_mode(self, ctx: MsgContext, mode: int) -> int:
        """handle_ruri_alias with mode (0 first alias, else last)."""
        if not ctx.ruri:
            return -1
        try:
            t = self._alias_target(ctx.ruri, mode != 0)
        except ValueError:
            return -1
        if t is None:
            return 2
        ctx.ruri, ctx.dst_uri = t
        return 1

    @kemi()
    def set_alias_to_pv(self, ctx: MsgContext, pvname: str) -> int:
        """Write the Contact alias as a URI into a PV."""
        c = self._contact(ctx)
        if c is None:
            return -1
        try:
            t = self._alias_target(c[2], False)
        except ValueError:
            return -1
        if t is None:
            return -1
        return 1 if self.server.pv.set(ctx, pvname, t[1]) else -1

    @kemi()
    def add_rcv_param(self, ctx: MsgContext, flag: int) -> int:
        """Add received="sip:ip:port" to the Contact (flag 1: as a URI parameter)."""
        if flag and ctx.proto != "udp":
            return -1  # Kamailio: a received URI parameter only for UDP
        rcv = f"sip:{self._source_hostport(ctx)}"
        if ctx.proto != "udp":
            rcv += f";transport={ctx.proto}"
        if self._contact(ctx) is None:
            return -1

        def edit(na: NameAddr) -> None:
            if flag:
                u = parse_uri(na.uri_text)
                u.params["received"] = rcv
                na.uri_text = str(u)
            else:
                na.params["received"] = f'"{rcv}"'

        ctx.add_lump(rewrite_headers("contact", edit_first_name_addr(edit), first_only=True))
        return 1

    @kemi()
    def fix_nated_sdp(self, ctx: MsgContext, flags: int) -> int:
        """fix_nated_sdp(flags): 1 add a=direction:active, 2 rewrite c= lines with the source
        IP, 4 add the nortpproxy line, 8 rewrite the o= line."""
        return self.fix_nated_sdp_ip(ctx, flags, ctx.src_ip)

    @kemi()
    def fix_nated_sdp_ip(self, ctx: MsgContext, flags: int, ip: str) -> int:
        """fix_nated_sdp_ip(flags, ip): as fix_nated_sdp with the given IP. 1 if a c=/o= line
        got another address, 2 if none did (Kamailio's count), -1 without an SDP body."""
        body = ctx.msg.body
        if not body or b"v=0" not in body:
            return -1
        new = body
        fam = b"6" if ":" in ip else b"4"
        raw_ip = ip.encode()
        changed = 0
        if flags & 2:
            changed += sum(1 for _, old in _SDP_C.findall(new) if old != raw_ip)
            new = _SDP_C.sub(lambda m: b"c=IN IP" + fam + b" " + raw_ip, new)
        if flags & 8:
            changed += sum(1 for m in _SDP_O.finditer(new) if m.group(2) != raw_ip)
            new = _SDP_O.sub(lambda m: m.group(1) + raw_ip, new)
        if flags & 1 and b"a=direction:" not in new:
            new = new.rstrip(b"\r\n") + b"\r\na=direction:active\r\n"
        if flags & 4 and self.params.nortpproxy_str.encode() not in new:
            new = new.rstrip(b"\r\n") + b"\r\n" + self.params.nortpproxy_str.encode() + b"\r\n"
        rc = 1 if changed else 2
        if new == body:
            return rc

        def lump(m: Message, original: Container[int]) -> None:
            m.set_body(new)

        ctx.add_lump(lump)
        return rc


MODULE = Nathelper
