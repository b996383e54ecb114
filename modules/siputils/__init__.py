"""siputils: SIP message checks and R-URI/Contact helpers (KSR.siputils).

Every function returns an int: 1 true, negative false (-1, or -2/-3 for the string checks as
Kamailio does). R-URI changes are visible at once; Contact changes are lumps.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from ksr.core.context import MsgContext
from ksr.core.lumps import rewrite_headers
from ksr.core.module import ModParams, Module
from ksr.kemi.registry import kemi
from ksr.sip.headers import header_key, parse_name_addr, split_commas
from ksr.sip.message import Header, Request
from ksr.sip.uri import Uri, parse_uri

from .contact import decode_fields, encode_fields, param_decode, param_encode, param_remove
from .uricmp import cmp_aor, cmp_uri


class SiputilsParams(ModParams):
    options_accept: str = "*/*"
    options_accept_encoding: str = ""
    options_accept_language: str = "en"
    options_support: str = ""
    contact_flds_separator: str = "*"
    e164_max_len: int = 15


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _uri(text: str | None) -> Uri | None:
    if not text:
        return None
    try:
        return parse_uri(text)
    except Exception:
        return None


class Siputils(Module):
    name = "siputils"
    Params = SiputilsParams

    # -- message type ------------------------------------------------------------------------
    @kemi(inline=("totag", 0))  # answered by its compiled binding (the same answer)
    def has_totag(self, ctx: MsgContext) -> int:
        """1 if the To header has a tag, -1 otherwise."""
        try:
            return 1 if ctx.msg.to.tag else -1
        except Exception:
            return -1

    @kemi()
    def is_request(self, ctx: MsgContext) -> int:
        """1 for requests, -1 for replies."""
        return 1 if ctx.is_request else -1

    @kemi()
    def is_reply(self, ctx: MsgContext) -> int:
        """1 for replies, -1 for requests."""
        return -1 if ctx.is_request else 1

    @kemi()
    def is_sip(self, ctx: MsgContext) -> int:
        """1 if the message is SIP (not HTTP)."""
        return 1 if ctx.msg.version.upper().startswith("SIP/") else -1

    @kemi()
    def is_http(self, ctx: MsgContext) -> int:
        """1 if the message is HTTP."""
        return 1 if ctx.msg.version.upper().startswith("HTTP/") else -1

    @kemi()
    def is_first_hop(self, ctx: MsgContext) -> int:
        """1 if this server is the first hop (Kamailio's rules, see is_first_hop_mode), -1 if not."""
        return self.is_first_hop_mode(ctx, 0)

    @kemi()
    def is_first_hop_mode(self, ctx: MsgContext, mode: int) -> int:
        """Kamailio's is_first_hop: a request with a single Via (mode unused); a reply without
        Record-Route, or whose top Record-Route is this server (mode 0: given as an IP
        address, and the reply not sent by this server itself). 1 yes, -1 no."""
        m = ctx.msg
        if ctx.is_request:
            try:
                return 1 if len(m.vias) < 2 else -1
            except Exception:
                return 1  # no parseable second Via: first hop, as Kamailio counts it
        rrs = m.get_values("record-route")
        if not rrs:
            return 1
        try:
            u = parse_name_addr(rrs[0]).uri
        except Exception:
            return -1
        host = u.host.strip("[]")
        if mode == 0 and not _is_ip(host):
            return -1
        if not self.server.is_myself_addr(host, u.port or None):
            return -1
        if mode == 0 and host == ctx.src_ip and (u.port or 5060) == ctx.src_port:
            return -1  # sent by this server itself: a loop
        return 1

    @kemi()
    def sip_parse_headers(self, ctx: MsgContext) -> int:
        """Parse every header: 1 if all the core ones parse, -1 otherwise."""
        try:
            ctx.msg.vias  # noqa: B018 - parsing is the point
            ctx.msg.cseq  # noqa: B018
            ctx.msg.from_  # noqa: B018
            ctx.msg.to  # noqa: B018
        except Exception:
            return -1
        return 1

    # -- string checks -------------------------------------------------------------------------
    @kemi()
    def is_uri(self, ctx: MsgContext, text: str) -> int:
        """1 if the text is a valid SIP, SIPS or TEL URI."""
        u = _uri(text)
        if u is None or not (u.is_sip or u.scheme == "tel"):
            return -1
        return 1

    @kemi()
    def is_tel_number(self, ctx: MsgContext, text: str) -> int:
        """1 for an optional '+' then digits (a leading '+' needs a non-zero digit); -2 otherwise."""
        if not text:
            return -2
        digits = text
        if text[0] == "+":
            if len(text) < 2 or text[1] not in "123456789":
                return -2
            digits = text[1:]
        return 1 if digits.isascii() and digits.isdigit() else -2

    @kemi()
    def is_numeric(self, ctx: MsgContext, text: str) -> int:
        """1 if the text is all digits; -2 empty, -3 other characters."""
        if not text:
            return -2
        return 1 if text.isascii() and text.isdigit() else -3

    @kemi()
    def is_alphanum(self, ctx: MsgContext, text: str) -> int:
        """1 if the text is all ASCII letters and digits; -2 empty, -3 other characters."""
        if not text:
            return -2
        return 1 if text.isascii() and text.isalnum() else -3

    @kemi()
    def is_alphanumex(self, ctx: MsgContext, text: str, extra: str) -> int:
        """Like is_alphanum, also allowing the characters in extra."""
        if not text:
            return -2
        ok = all((c.isascii() and c.isalnum()) or c in extra for c in text)
        return 1 if ok else -3

    # -- credentials ---------------------------------------------------------------------------
    @kemi()
    def is_user(self, ctx: MsgContext, user: str) -> int:
        """1 if the username in the (Proxy-)Authorization credentials equals user."""
        got = self.server.pv.get(ctx, "$au")
        return 1 if got is not None and got == user else -1

    # -- R-URI parameters ------------------------------------------------------------------------
    def _ruri_params(self, ctx: MsgContext) -> dict[str, str | None] | None:
        u = _uri(ctx.ruri) if ctx.is_request else None
        return u.params if u is not None else None

    @kemi()
    def uri_param(self, ctx: MsgContext, name: str) -> int:
        """1 if the R-URI has the parameter with no value."""
        p = self._ruri_params(ctx)
        if p is None or name.lower() not in p:
            return -1
        return 1 if not p[name.lower()] else -1

    @kemi()
    def uri_param_value(self, ctx: MsgContext, name: str, value: str) -> int:
        """1 if the R-URI has the parameter with exactly this value."""
        p = self._ruri_params(ctx)
        return 1 if p is not None and p.get(name.lower(), None) == value else -1

    @kemi()
    def uri_param_any(self, ctx: MsgContext, name: str) -> int:
        """1 if the R-URI has the parameter, with or without a value."""
        p = self._ruri_params(ctx)
        return 1 if p is not None and name.lower() in p else -1

    @kemi()
    def uri_param_rm(self, ctx: MsgContext, name: str) -> int:
        """Remove a parameter from the R-URI: 1 removed, -1 not there or error."""
        u = _uri(ctx.ruri) if ctx.is_request else None
        if u is None or name.lower() not in u.params:
            return -1
        del u.params[name.lower()]
        ctx.ruri = str(u)
        return 1

    @kemi()
    def add_uri_param(self, ctx: MsgContext, param: str) -> int:
        """Add "name=value" (or ";name=value") to the R-URI, before any URI headers."""
        if not ctx.is_request or ctx.ruri is None:
            return -1
        p = param.lstrip(";")
        if not p:
            return 1
        uri, q, hdrs = ctx.ruri.partition("?")
        new = f"{uri};{p}" + (f"?{hdrs}" if q else "")
        if _uri(new) is None:
            return -1
        ctx.ruri = new
        return 1

    @kemi()
    def is_gruu(self, ctx: MsgContext) -> int:
        """R-URI is a GRUU: 1 with a "gr" parameter with a value (public), 2 without, -1 no."""
        p = self._ruri_params(ctx)
        if p is None or "gr" not in p:
            return -1
        return 1 if p["gr"] else 2

    # -- comparisons -------------------------------------------------------------------------------
    @kemi(name="cmp_uri")
    def cmp_uri_(self, ctx: MsgContext, a: str, b: str) -> int:
        """1 if the two SIP URIs are equal by RFC 3261 §19.1.4 rules; -1 not, -2 unparsable."""
        return cmp_uri(a, b)

    @kemi(name="cmp_aor")
    def cmp_aor_(self, ctx: MsgContext, a: str, b: str) -> int:
        """1 if the two URIs have the same address of record (user, host, port); -1 not, -2 error."""
        return cmp_aor(a, b)

    @kemi()
    def cmp_hdr_name(self, ctx: MsgContext, a: str, b: str) -> int:
        """1 if the header names are the same (compact forms aware, case-insensitive), -1 not."""
        if not a.strip() or not b.strip():
            return -2
        return 1 if header_key(a.strip()) == header_key(b.strip()) else -1

    @kemi()
    def hdr_date_check(self, ctx: MsgContext, tdiff: int) -> int:
        """1 if the Date header is no older than tdiff seconds; -1 otherwise or if missing."""
        v = ctx.msg.get("date")
        if not v:
            return -1
        try:
            when = parsedate_to_datetime(v).timestamp()
        except Exception:
            return -1
        return 1 if time.time() - when <= tdiff else -1

    # -- OPTIONS -------------------------------------------------------------------------------------
    @kemi()
    def options_reply(self, ctx: MsgContext) -> int:
        """Answer 200 OK (with Allow/Accept/Supported) to an OPTIONS for the server itself."""
        if not ctx.is_request or ctx.method != "OPTIONS":
            return -1
        u = _uri(ctx.ruri)
        if u is None or u.user:
            return -1
        p = self.params
        lines = [Header("Allow", _allow()), Header("Accept", p.options_accept)]
        if p.options_accept_encoding:
            lines.append(Header("Accept-Encoding", p.options_accept_encoding))
        if p.options_accept_language:
            lines.append(Header("Accept-Language", p.options_accept_language))
        if p.options_support:
            lines.append(Header("Supported", p.options_support))
        ctx.reply_lumps.extend(lines)
        return 1 if self.server.send_reply_any(ctx, 200, "OK") else -1

    # -- Contact encoding ------------------------------------------------------------------------------
    def _map_contacts(
        self, ctx: MsgContext, fn: Callable[[str], str | None], all_: bool = True
    ) -> int:
        """Apply fn to Contact URIs as a lump; -1 if no Contact or fn fails on the first."""
        values = ctx.msg.get_values("contact")
        if not values or values[0].strip() == "*":
            return -1
        try:
            first = parse_name_addr(values[0])
        except Exception:
            return -1
        if fn(first.uri_text) is None:
            return -1

        def change(value: str) -> str:
            out = []
            for v in split_commas(value):
                try:
                    na = parse_name_addr(v)
                except Exception:
                    out.append(v)
                    continue
                new = fn(na.uri_text)
                if new is not None:
                    na.uri_text = new
                out.append(str(na))
            return ", ".join(out)

        ctx.add_lump(rewrite_headers("contact", change, first_only=not all_))
        return 1

    @kemi()
    def encode_contact(self, ctx: MsgContext, prefix: str, ip: str) -> int:
        """Rewrite Contact URIs as sip:PREFIX*user*pass*host*port*proto@ip (as a lump)."""
        sep = self.params.contact_flds_separator
        return self._map_contacts(ctx, lambda t: encode_fields(t, prefix, ip, sep))

    @kemi()
    def decode_contact(self, ctx: MsgContext) -> int:
        """Decode an R-URI made by encode_contact back to the original URI."""
        if not ctx.is_request:
            return -1
        new = decode_fields(ctx.ruri or "", self.params.contact_flds_separator)
        if new is None:
            return -1
        ctx.ruri = new
        return 1

    @kemi()
    def decode_contact_header(self, ctx: MsgContext) -> int:
        """Decode Contact URIs made by encode_contact (as a lump)."""
        sep = self.params.contact_flds_separator
        return self._map_contacts(ctx, lambda t: decode_fields(t, sep))

    @kemi()
    def contact_param_encode(self, ctx: MsgContext, pname: str, saddr: str) -> int:
        """Contact URI -> <saddr;pname=BASE58(original URI)> (as a lump)."""
        return self._map_contacts(ctx, lambda t: param_encode(t, pname, saddr))

    @kemi()
    def contact_param_encode_alias(self, ctx: MsgContext, pname: str, saddr: str) -> int:
        """Like contact_param_encode, adding ;alias=ip~port~proto of the source first."""
        alias = f"alias={ctx.src_ip}~{ctx.src_port}~{_proto_id(ctx.proto)}"
        return self._map_contacts(ctx, lambda t: param_encode(f"{t};{alias}", pname, saddr))

    @kemi()
    def contact_param_decode(self, ctx: MsgContext, pname: str) -> int:
        """Decode Contact URIs made by contact_param_encode (as a lump)."""
        return self._map_contacts(ctx, lambda t: param_decode(t, pname))

    @kemi()
    def contact_param_decode_ruri(self, ctx: MsgContext, pname: str) -> int:
        """Replace the R-URI with the URI encoded in its parameter pname."""
        if not ctx.is_request:
            return -1
        new = param_decode(ctx.ruri or "", pname)
        if new is None or _uri(new) is None:
            return -1
        ctx.ruri = new
        return 1

    @kemi()
    def contact_param_rm(self, ctx: MsgContext, pname: str) -> int:
        """Remove parameter pname from the Contact URIs (as a lump)."""
        return self._map_contacts(ctx, lambda t: param_remove(t, pname))

    @kemi()
    def contact_param_check(self, ctx: MsgContext, pname: str) -> int:
        """1 if the first Contact URI has parameter pname, -1 otherwise."""
        values = ctx.msg.get_values("contact")
        if not values or values[0].strip() == "*":
            return -1
        try:
            u = parse_name_addr(values[0]).uri
        except Exception:
            return -1
        return 1 if pname.lower() in u.params else -1


def _allow() -> str:
    return "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, MESSAGE, REFER"


def _proto_id(proto: str) -> int:
    return {"udp": 1, "tcp": 2, "tls": 3, "sctp": 4, "ws": 5, "wss": 6}.get(proto, 0)


__all__ = ["Request", "Siputils"]

MODULE = Siputils
