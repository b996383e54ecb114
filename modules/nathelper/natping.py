"""NAT keepalive pings of registered contacts (Kamailio nathelper's ``natping_interval``).

Every second one slice of the contacts is pinged, so that each contact gets one ping per
``natping_interval`` and a large table does not go out in one burst: at the start of each
interval the list of contacts is taken from usrloc (all of them, or those with usrloc's
``nat_bflag`` when ``ping_nated_only`` = 1) and split into ``natping_interval`` slices.

A contact whose branch flags include ``sipping_bflag`` gets a SIP request (``sipping_method``,
From ``sipping_from``), the others four zero bytes, as Kamailio sends. Pings go over UDP only
(a contact reached over TCP/TLS/WS has its connection's own keepalive), to the received
address if there is one, else to the Contact URI, from the socket the contact registered on
(or ``force_socket``).

Replies to SIP pings are recognised by their Call-ID (a per-process prefix), their single Via
and their CSeq method; they are absorbed after the script's reply route has seen them, as in
Kamailio. With ``keepalive_timeout`` > 0 a reply also records that the contact is alive; a
SIP-pinged contact that neither answered nor re-registered for that long is made to expire in
10 seconds, and usrloc's timer removes it (``usrloc:contact-expired``).
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import zlib
from typing import TYPE_CHECKING

from ksr.core.context import MsgContext, SocketInfo
from ksr.sip.builders import make_via
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import parse_name_addr, split_commas

if TYPE_CHECKING:
    from ksr.core.core_api import Core
    from ksr.modules.usrloc.api import Contact, Domain, UsrlocApi

    from . import NathelperParams

log = logging.getLogger("ksr.nathelper")

KEEPALIVE = b"\x00\x00\x00\x00"  # Kamailio's nathelper sends these four bytes
EXPIRE_UNANSWERED = 10.0  # seconds left to a contact that stopped answering (as Kamailio)


class NatPinger:
    """The pinger of one worker: ``tick()`` runs every second on the server's timers."""

    def __init__(
        self, server: Core, params: NathelperParams, usrloc: UsrlocApi, force_socket: str
    ) -> None:
        self.server = server
        self.usrloc = usrloc
        self.interval = params.natping_interval
        self.nated_only = bool(params.ping_nated_only)
        self.sip_flag = 1 << params.sipping_bflag if params.sipping_bflag >= 0 else 0
        self.sip_from = params.sipping_from
        self.method = params.sipping_method.upper()
        self.keepalive_timeout = params.keepalive_timeout
        self.filter_server_id = bool(params.filter_server_id)
        self.force_socket = force_socket
        self.callid_prefix = f"{random.getrandbits(32):08x}"
        self._callid_n = itertools.count(random.getrandbits(24))
        self._tag_n = itertools.count(random.getrandbits(24))
        self.answered: dict[str, float] = {}  # ruid -> when a ping reply last came
        self._tick = 0
        self._round: list[tuple[Domain, Contact]] = []
        self._pos = 0
        self._per_tick = 0
        self.sent = 0  # pings sent (SIP and keepalive), for tests and statistics

    # -- the timer ------------------------------------------------------------------------------
    def tick(self) -> None:
        if self._tick % self.interval == 0:
            self._start_round()
        batch = self._round[self._pos : self._pos + self._per_tick]
        self._pos += len(batch)
        for d, c in batch:
            try:
                self.ping(d, c)
            except Exception:
                log.exception("nathelper: ping of %s failed", c.contact)
        self._tick += 1

    def _start_round(self) -> None:
        mask = self.usrloc.nat_flag if self.nated_only else 0
        self._round = self.usrloc.live_contacts(mask)
        if self.filter_server_id:
            self._round = [(d, c) for d, c in self._round if self._mine(c)]
        self._pos = 0
        self._per_tick = math.ceil(len(self._round) / self.interval)
        present = {c.ruid for _, c in self._round}
        self.answered = {r: t for r, t in self.answered.items() if r in present}

    def _mine(self, c: Contact) -> bool:
        """filter_server_id: a contact this node saved (Kamailio's rule), or one whose node
        was declared dead and falls to this node (ksr: the survivors share its contacts)."""
        return c.server_id == self.usrloc.server_id or self.server.cluster.nodes.adopts(
            c.server_id, c.ruid
        )

    # -- sending --------------------------------------------------------------------------------
    def ping(self, d: Domain, c: Contact) -> bool:
        """One ping to one contact; False when it was not sent (not UDP, unresolvable...)."""
        sip = bool(self.sip_flag and c.cflags & self.sip_flag)
        target = c.received or c.contact
        if sip and c.path:  # the first Path hop carries the ping (with the Path as Route)
            try:
                target = parse_name_addr(split_commas(c.path)[0]).uri_text
            except RemoteProtocolError:
                return False
        dest = self.server.resolve(target)
        if dest is None or dest.proto != "udp":
            return False
        if sip and self._unanswered(d, c):
            return False
        sock = self._socket(c)
        if sock is None:
            log.warning("nathelper: no UDP socket to ping %s", c.contact)
            return False
        data = self.sip_ping(c, sock) if sip else KEEPALIVE
        ok = self.server.send(dest, data, sock)
        self.sent += ok
        return ok

    def _unanswered(self, d: Domain, c: Contact) -> bool:
        """keepalive_timeout: True (and the contact made to expire) if it has been silent."""
        if self.keepalive_timeout <= 0:
            return False
        now = self.usrloc.now()
        last = max(c.last_modified, self.answered.get(c.ruid, 0.0))
        if last + self.keepalive_timeout >= now:
            return False
        log.info("nathelper: %s did not answer keepalives, expiring it", c.contact)
        self.usrloc.expire_soon(d, c, EXPIRE_UNANSWERED)
        return True

    def _socket(self, c: Contact) -> SocketInfo | None:
        wanted = self.force_socket or c.socket
        for s in self.server.listeners:
            if s.proto == "udp" and str(s) == wanted:
                return s
        return self.server.socket_for("udp")

    def sip_ping(self, c: Contact, sock: SocketInfo) -> bytes:
        """The ping request, laid out as Kamailio's build_sipping()."""
        via = make_via(
            "udp",
            sock.adv_ip,
            sock.adv_port,
            f"z9hG4bK{random.randint(1000000, 9999999)}",
            worker=self.server.worker_id if self.server.handoff is not None else None,
        )  # with worker processes the reply comes back to this one
        aorhash = zlib.crc32(c.aor.encode())
        tag = f"{c.ruid}-{aorhash:x}-{next(self._tag_n):x}"
        callid = f"{self.callid_prefix}-{next(self._callid_n):x}@{sock.ip}"
        lines = [f"{self.method} {c.contact} SIP/2.0", f"Via: {via}"]
        if c.path:
            lines.append(f"Route: {c.path}")
        lines += [
            "Max-Forwards: 70",
            f"From: {self.sip_from};tag={tag}",
            f"To: <{c.contact}>",
            f"Call-ID: {callid}",
            f"CSeq: 1 {self.method}",
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    # -- replies --------------------------------------------------------------------------------
    def absorb_reply(self, ctx: MsgContext) -> bool:
        """Server.reply_handlers: True for a reply to one of our SIP pings (then dropped)."""
        rpl = ctx.reply
        try:
            if not rpl.call_id.startswith(self.callid_prefix + "-"):
                return False
            if rpl.cseq.method != self.method or len(rpl.vias) != 1:
                return False
            tag = rpl.from_tag or ""
        except RemoteProtocolError:
            return False
        ruid = tag.rsplit("-", 2)[0] if tag.count("-") >= 2 else ""
        if ruid and self.keepalive_timeout > 0:
            self.answered[ruid] = self.usrloc.now()
        return True
