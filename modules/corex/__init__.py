"""corex: core extensions (KSR.corex): branches, extended flags, sockets, raw sends, files."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Container
from pathlib import Path

from ksr.core.context import (
    VIA_ADD_SRVID,
    VIA_ADD_XAVP_PARAMS,
    VIA_USE_XAVP_FIELDS,
    Branch,
    Destination,
    Lump,
    MsgContext,
    SocketInfo,
)
from ksr.core.module import Module
from ksr.core.pv_core import find_socket
from ksr.core.xavp import newest_fields
from ksr.kemi.registry import XVal, kemi
from ksr.sip.headers import split_commas
from ksr.sip.hostport import split_proto
from ksr.sip.message import Header, Message

log = logging.getLogger("ksr.corex")
MAX_XFLAG = 63


def _q_value(q: str) -> int | None:
    """ "0.5" -> 500 (q*1000), "" -> -1 (unset)."""
    if not q.strip():
        return -1
    try:
        v = float(q)
    except ValueError:
        return None
    if not 0 <= v <= 1:
        return None
    return round(v * 1000)


class Corex(Module):
    name = "corex"

    # -- branches ------------------------------------------------------------------------------
    @kemi()
    def append_branch(self, ctx: MsgContext) -> int:
        """Add the current R-URI (with $du, branch flags, send socket) as a new branch."""
        if not ctx.is_request or not ctx.ruri:
            return -1
        ctx.branches.append(Branch(ctx.ruri, ctx.dst_uri, -1, None, ctx.bflags, ctx.send_socket))
        return 1

    @kemi()
    def append_branch_uri(self, ctx: MsgContext, uri: str) -> int:
        """Add a new branch to uri."""
        return self.append_branch_uri_q(ctx, uri, "")

    @kemi()
    def append_branch_uri_q(self, ctx: MsgContext, uri: str, q: str) -> int:
        """Add a new branch to uri with q value q ("0.5")."""
        if not ctx.is_request or not uri:
            return -1
        qv = _q_value(q)
        if qv is None:
            return -1
        ctx.branches.append(Branch(uri, None, qv))
        return 1

    # -- extended flags -------------------------------------------------------------------------
    @kemi()
    def setxflag(self, ctx: MsgContext, idx: int) -> int:
        """Set extended flag idx (0..63)."""
        if not 0 <= idx <= MAX_XFLAG:
            return -1
        ctx.xflags |= 1 << idx
        return 1

    @kemi()
    def resetxflag(self, ctx: MsgContext, idx: int) -> int:
        """Reset extended flag idx."""
        if not 0 <= idx <= MAX_XFLAG:
            return -1
        ctx.xflags &= ~(1 << idx)
        return 1

    @kemi()
    def isxflagset(self, ctx: MsgContext, idx: int) -> int:
        """1 if extended flag idx is set, -1 otherwise."""
        if not 0 <= idx <= MAX_XFLAG:
            return -1
        return 1 if ctx.xflags & (1 << idx) else -1

    # -- sockets and addresses -------------------------------------------------------------------
    def _by_name(self, name: str) -> SocketInfo | None:
        return next((s for s in self.server.listeners if s.name and s.name == name), None)

    @kemi()
    def set_send_socket(self, ctx: MsgContext, spec: str) -> int:
        """Force the sending socket ("proto:ip:port"); "" resets."""
        if not spec:
            ctx.send_socket = None
            return 1
        sock = find_socket(ctx, spec)
        if sock is None:
            return -1
        ctx.send_socket = sock
        return 1

    @kemi()
    def set_send_socket_name(self, ctx: MsgContext, name: str) -> int:
        """Force the sending socket by its name."""
        sock = self._by_name(name)
        if sock is None:
            return -1
        ctx.send_socket = sock
        return 1

    @kemi()
    def set_recv_socket(self, ctx: MsgContext, spec: str) -> int:
        """Pretend the message arrived on another local socket."""
        sock = find_socket(ctx, spec)
        if sock is None:
            return -1
        ctx.socket = sock
        return 1

    @kemi()
    def set_recv_socket_name(self, ctx: MsgContext, name: str) -> int:
        """set_recv_socket by socket name."""
        sock = self._by_name(name)
        if sock is None:
            return -1
        ctx.socket = sock
        return 1

    @kemi()
    def set_source_address(self, ctx: MsgContext, addr: str) -> int:
        """Pretend the message came from another address ("[proto:]ip:port")."""
        _, s = split_proto(addr.strip())
        if s.startswith("["):
            host, _, rest = s[1:].partition("]")
            port = rest[1:]
        else:
            host, _, port = s.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return -1
        ctx.src_ip, ctx.src_port = host, int(port)
        return 1

    @kemi()
    def is_socket_name(self, ctx: MsgContext, name: str) -> int:
        """1 if a listening socket has this name."""
        return 1 if self._by_name(name) else -1

    # -- the Via ksr adds (ctx.via_flags, read by the Via builder) ---------------------------------
    @staticmethod
    def _via_flag(ctx: MsgContext, bit: int, on: int) -> int:
        ctx.via_flags = ctx.via_flags | bit if on else ctx.via_flags & ~bit
        return 1

    @kemi()
    def via_add_srvid(self, ctx: MsgContext, flags: int) -> int:
        """via_add_srvid(1): the Via ksr adds to this request gets ``;srvid=<server_id>`` (when
        core ``server_id`` is not 0); 0 turns it off again."""
        return self._via_flag(ctx, VIA_ADD_SRVID, flags)

    @kemi()
    def via_add_xavp_params(self, ctx: MsgContext, flags: int) -> int:
        """via_add_xavp_params(1): the fields of ``$xavp(<core xavp_via_params>)`` become
        ``;name=value`` parameters of the Via ksr adds to this request; 0 turns it off."""
        return self._via_flag(ctx, VIA_ADD_XAVP_PARAMS, flags)

    @kemi()
    def via_use_xavp_fields(self, ctx: MsgContext, flags: int) -> int:
        """via_use_xavp_fields(1): the ``address``, ``port`` and ``proto`` fields of
        ``$xavp(<core xavp_via_fields>)`` replace the host, port and transport of the Via ksr
        adds to this request; 0 turns it off."""
        return self._via_flag(ctx, VIA_USE_XAVP_FIELDS, flags)

    @kemi()
    def via_reply_add_xavp_params(self, ctx: MsgContext, flags: int) -> int:
        """via_reply_add_xavp_params(1) in a reply route: the fields of
        ``$xavp(<core xavp_via_reply_params>)`` become parameters of the Via the relayed reply
        goes to (the next one after ksr's). ksr's own replies are not changed."""
        name = self.server.config.core.xavp_via_reply_params
        if not flags or not name or ctx.is_request:
            return 1
        fields = newest_fields(ctx.xavps, name)
        if fields:
            ctx.add_lump(_next_via_params("".join(f";{k}={v}" for k, v in fields.items())))
        return 1

    # -- message tests ---------------------------------------------------------------------------
    @kemi()
    def has_ruri_user(self, ctx: MsgContext) -> int:
        """1 if the R-URI has a user part, -1 otherwise."""
        return 1 if ctx.is_request and self.server.pv.get(ctx, "$rU") else -1

    @kemi()
    def has_user_agent(self, ctx: MsgContext) -> int:
        """1 if there is a User-Agent header, -1 otherwise."""
        return 1 if ctx.msg.has("user-agent") else -1

    @kemi()
    def is_faked_msg(self, ctx: MsgContext) -> int:
        """1 for the internal message of timer and event routes, -1 for real ones."""
        return 1 if ctx.faked else -1

    # -- sending ----------------------------------------------------------------------------------
    def _send_raw(self, uri: str, sock: SocketInfo | None, data: str) -> int:
        dest = self.server.resolve(uri)
        if dest is None:
            return -1
        if sock is not None and sock.proto != dest.proto:
            return -1
        return 1 if self.server.send(dest, data.encode("utf-8", "surrogateescape"), sock) else -1

    @kemi()
    def send_data(self, ctx: MsgContext, uri: str, data: str) -> int:
        """Send raw data to the address of a SIP URI."""
        return self._send_raw(uri, None, data)

    @kemi()
    def sendx(self, ctx: MsgContext, uri: str, sock: str, data: str) -> int:
        """Send raw data to uri from the socket sock ("proto:ip:port")."""
        s = find_socket(ctx, sock) if sock else None
        if sock and s is None:
            return -1
        return self._send_raw(uri, s, data)

    def _forward_uac(self, ctx: MsgContext, uri: str | None, branch: int) -> int:
        """Send the request as a new UAC would: every Via replaced by ours."""
        if not ctx.is_request:
            return -1
        target = uri
        if branch > 0:
            if branch > len(ctx.branches):
                return -1
            b = ctx.branches[branch - 1]
            target = uri or b.dst_uri or b.uri
        target = target or ctx.next_hop()
        dest: Destination | None = self.server.resolve(target) if target else None
        if dest is None:
            return -1
        sock = self.server.socket_for(dest.proto, ctx)
        if sock is None:
            return -1
        out = ctx.apply_lumps(ctx.request)
        if branch > 0:
            out.uri = ctx.branches[branch - 1].uri
        out.headers = [h for h in out.headers if h.key != "via"]
        via = self.server.make_via(ctx, sock, "z9hG4bK" + secrets.token_hex(8))
        out.headers.insert(0, Header("Via", via))
        return 1 if self.server.send(dest, out.to_bytes(), sock) else -1

    @kemi()
    def forward_uac(self, ctx: MsgContext) -> int:
        """Stateless forward to $du/R-URI with all Vias replaced by a new one."""
        return self._forward_uac(ctx, None, 0)

    @kemi()
    def forward_uac_branch(self, ctx: MsgContext, branch: int) -> int:
        """forward_uac to branch idx (1 = first appended branch)."""
        return self._forward_uac(ctx, None, branch)

    @kemi()
    def forward_uac_uri(self, ctx: MsgContext, uri: str) -> int:
        """forward_uac to the given URI."""
        return self._forward_uac(ctx, uri, 0)

    @kemi()
    def forward_uac_uri_branch(self, ctx: MsgContext, uri: str, branch: int) -> int:
        """forward_uac of branch idx to the given URI."""
        return self._forward_uac(ctx, uri, branch)

    # -- files ------------------------------------------------------------------------------------
    @kemi()
    def file_read(self, ctx: MsgContext, path: str) -> XVal:
        """Content of a text file; None/nil if it cannot be read."""
        try:
            return Path(path).read_text(errors="surrogateescape")
        except OSError as err:
            log.warning("file_read(%s): %s", path, err.strerror)
            return None

    @kemi()
    def file_write(self, ctx: MsgContext, path: str, content: str) -> int:
        """Write content to a file (replacing it): 1 ok, -1 error."""
        try:
            Path(path).write_text(content, errors="surrogateescape")
        except OSError as err:
            log.warning("file_write(%s): %s", path, err.strerror)
            return -1
        return 1


def _next_via_params(params: str) -> Lump:
    """A lump appending ``params`` to the second Via value of a reply (the one it is relayed
    to once ksr's own is removed)."""

    def lump(m: Message, original: Container[int]) -> None:
        seen = 0
        for i, h in enumerate(m.headers):
            if h.key != "via":
                continue
            values = split_commas(h.value)
            if seen + len(values) > 1:
                values[1 - seen] += params
                m.headers[i] = Header(h.name, ", ".join(values))
                m.forget_parsed()
                return
            seen += len(values)

    return lump


MODULE = Corex
