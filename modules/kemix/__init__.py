"""kemix (KSR.kx): quick getters for message attributes, defines and environment variables.

Each attribute has up to three forms, as Kamailio's kemix: ``get_*`` (None/nil when missing),
``gete_*`` ("" when missing) and ``getw_*`` ("<null>" when missing).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ksr.core.context import MsgContext
from ksr.core.module import Module
from ksr.core.pv_core import PROTO_IDS
from ksr.kemi.registry import XVal, kemi
from ksr.sip.message import Response

Get = Callable[[Any, MsgContext], XVal]


def _pv(spec: str) -> Get:
    return lambda self, ctx: self.server.pv.get(ctx, spec)


def _sock_text(sock: Any) -> str | None:
    return str(sock) if sock is not None else None


# name -> getter; gete_/getw_ variants listed in _VARIANTS
_GETTERS: dict[str, Get] = {
    "ruri": lambda self, ctx: ctx.ruri,
    "ruser": _pv("$rU"),
    "rhost": _pv("$rd"),
    "ouri": _pv("$ou"),
    "furi": _pv("$fu"),
    "fuser": _pv("$fU"),
    "fhost": _pv("$fd"),
    "turi": _pv("$tu"),
    "tuser": _pv("$tU"),
    "thost": _pv("$td"),
    "duri": lambda self, ctx: ctx.dst_uri,
    "cturi": _pv("$ctu"),
    "nhuri": lambda self, ctx: ctx.next_hop(),
    "srcuri": _pv("$su"),
    "srcaddr_sock": lambda self, ctx: f"{ctx.proto}:{ctx.src_ip}:{ctx.src_port}",
    "ua": _pv("$ua"),
    "srcip": lambda self, ctx: ctx.src_ip,
    "send_sock": lambda self, ctx: _sock_text(ctx.send_socket),
    "send_sock_name": lambda self, ctx: (ctx.send_socket.name or None) if ctx.send_socket else None,
    "rcvip": lambda self, ctx: ctx.socket.ip,
    "rcv_sock_name": lambda self, ctx: ctx.socket.name or None,
    "rcvport": lambda self, ctx: ctx.socket.port,
    "rcvadvip": lambda self, ctx: ctx.socket.adv_ip,
    "rcvadvport": lambda self, ctx: ctx.socket.adv_port,
    "rcvaddr_sock": lambda self, ctx: str(ctx.socket),
    "proto": lambda self, ctx: ctx.proto,
    "au": _pv("$au"),
    "method": lambda self, ctx: ctx.method or None,
    "body": _pv("$rb"),
    "callid": _pv("$ci"),
    "msgbuf": _pv("$mb"),
    "srcport": lambda self, ctx: ctx.src_port,
}
# Which forms exist for each attribute (Kamailio's export list). furi and turi also get their
# gete_/getw_ forms: earlier Kamailio releases exported them and scripts written then call them.
_VARIANTS: dict[str, str] = {
    "ruri": "g",
    "ruser": "gew",
    "rhost": "gew",
    "ouri": "g",
    "furi": "gew",
    "fuser": "gew",
    "fhost": "gew",
    "turi": "gew",
    "tuser": "gew",
    "thost": "gew",
    "duri": "gew",
    "cturi": "gew",
    "nhuri": "g",
    "srcuri": "g",
    "srcaddr_sock": "g",
    "ua": "gew",
    "srcip": "g",
    "send_sock": "g",
    "send_sock_name": "g",
    "rcvip": "g",
    "rcv_sock_name": "g",
    "rcvport": "g",
    "rcvadvip": "g",
    "rcvadvport": "g",
    "rcvaddr_sock": "g",
    "proto": "g",
    "au": "gew",
    "method": "g",
    "body": "gew",
    "callid": "g",
    "msgbuf": "g",
    "srcport": "g",
}


def _make(base: Get, missing: str | None, doc: str) -> Callable[..., XVal]:
    def getter(self: Kemix, ctx: MsgContext) -> XVal:
        v = base(self, ctx)
        return missing if v is None and missing is not None else v

    getter.__doc__ = doc
    getter.__annotations__ = {"ctx": MsgContext, "return": XVal}
    return getter


class Kemix(Module):
    """KSR.kx: getters."""

    name = "kemix"
    kemi_name = "kx"

    def _defines(self) -> dict[str, str | int]:
        return self.server.config.core.defines

    @kemi()
    def get_def(self, ctx: MsgContext, name: str) -> XVal:
        """Value of a define from ``[core] defines``; None/nil if not defined."""
        v = self._defines().get(name)
        return None if v is None else v

    @kemi()
    def get_defn(self, ctx: MsgContext, name: str) -> int:
        """A define's value as int (0 if missing or not a number)."""
        return _to_int(self._defines().get(name))

    @kemi()
    def ifdef(self, ctx: MsgContext, name: str) -> bool:
        """True if the name is in ``[core] defines``."""
        return name in self._defines()

    @kemi()
    def ifndef(self, ctx: MsgContext, name: str) -> bool:
        """True if the name is not in ``[core] defines``."""
        return name not in self._defines()

    @kemi()
    def get_env(self, ctx: MsgContext, name: str) -> XVal:
        """Environment variable; None/nil if unset."""
        return os.environ.get(name)

    @kemi()
    def get_envn(self, ctx: MsgContext, name: str) -> int:
        """Environment variable as int (0 if unset or not a number)."""
        return _to_int(os.environ.get(name))

    @kemi()
    def get_status(self, ctx: MsgContext) -> int:
        """Reply status code; -1 for requests."""
        return ctx.msg.status if isinstance(ctx.msg, Response) else -1

    @kemi()
    def gets_status(self, ctx: MsgContext) -> XVal:
        """Reply status code as a string; None/nil for requests."""
        return str(ctx.msg.status) if isinstance(ctx.msg, Response) else None

    @kemi()
    def get_bodylen(self, ctx: MsgContext) -> int:
        """Body length in bytes."""
        return len(ctx.msg.body)

    @kemi()
    def get_timestamp(self, ctx: MsgContext) -> int:
        """Current unix time."""
        return int(time.time())

    @kemi()
    def get_conid(self, ctx: MsgContext) -> int:
        """TCP connection id (0 for UDP)."""
        return ctx.conn_id

    @kemi()
    def get_msglen(self, ctx: MsgContext) -> int:
        """Message length in bytes."""
        return len(ctx.msg.to_bytes())

    @kemi()
    def get_msgtype(self, ctx: MsgContext) -> int:
        """1 for a request, 2 for a reply."""
        return 1 if ctx.is_request else 2

    @kemi()
    def get_protoid(self, ctx: MsgContext) -> int:
        """Transport id: 1 udp, 2 tcp, 3 tls, 4 sctp, 5 ws, 6 wss."""
        return PROTO_IDS.get(ctx.proto, 0)

    @kemi()
    def get_send_sock_port(self, ctx: MsgContext) -> int:
        """Port of the forced send socket (0 if none)."""
        return ctx.send_socket.port if ctx.send_socket else 0


def _to_int(v: Any) -> int:
    if isinstance(v, int):
        return v
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        return 0


for _name, _forms in _VARIANTS.items():
    for _f, _prefix, _missing, _what in (
        ("g", "get_", None, "None/nil"),
        ("e", "gete_", "", '""'),
        ("w", "getw_", "<null>", '"<null>"'),
    ):
        if _f in _forms:
            _fn = _make(
                _GETTERS[_name], _missing, f"{_name.replace('_', ' ')}; {_what} if missing."
            )
            setattr(Kemix, _prefix + _name, kemi(name=_prefix + _name)(_fn))

MODULE = Kemix
