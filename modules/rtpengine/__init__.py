"""rtpengine: media relay control over rtpengine's ng protocol (KSR.rtpengine).

Kamailio's functions, parameters and RPC commands: ``rtpengine_manage/offer/answer/delete/
query`` (with the ``0`` form without flags and the ``2`` form with a Via-branch choice),
``set_rtpengine_set``, recording, media and DTMF blocking, ``rtpengine.show/ping/enable``.
An offer or answer rewrites the SDP of the message being routed with the relay's SDP (applied
when the message is sent on, like every change ksr makes); the call then sticks to its relay.

Return codes as Kamailio's: 1 done, -1 refused or failed (no relay answered, the relay
refused, no SDP, a malformed answer), each failure with one log line naming the relay.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import trio
from pydantic import field_validator

from ksr.core.config import ConfigError
from ksr.core.context import MsgContext, RouteType
from ksr.core.module import ModParams, Module
from ksr.core.rpc import RpcError, rpc
from ksr.kemi.registry import kemi
from ksr.sip.message import Message, Request, Response
from ksr.suspend import can_suspend, wait

from . import ng
from .client import NgClient
from .relays import Relay, RelayConfigError, Relays, parse_sets

log = logging.getLogger("ksr.rtpengine")

_SET_KEY = "rtpengine.set"  # the set chosen by set_rtpengine_set for this message


class RtpengineParams(ModParams):
    rtpengine_sock: list[str] = []
    rtpengine_disable_tout: int = 60  # seconds a relay that did not answer is left alone
    rtpengine_tout_ms: int = 1000  # wait per try
    rtpengine_retr: int = 5  # tries per command
    queried_nodes_limit: int = 30  # relays tried for one command
    setid_default: int = 0

    @field_validator("rtpengine_sock", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v


def _forms(command: str, doc: str) -> tuple[Callable[..., int], ...]:
    """The three KSR forms of a command: without flags, with flags, with flags and a Via-branch
    choice (Kamailio's ``name0``, ``name``, ``name2``)."""

    @kemi(suspends=True)
    def without_flags(self: Rtpengine, ctx: MsgContext) -> int:
        return self._run(ctx, command, None)

    @kemi(suspends=True)
    def with_flags(self: Rtpengine, ctx: MsgContext, flags: str) -> int:
        return self._run(ctx, command, flags)

    @kemi(suspends=True)
    def with_via(self: Rtpengine, ctx: MsgContext, flags: str, viabranch: str) -> int:
        return self._run(ctx, command, flags, viabranch)

    without_flags.__doc__ = doc
    with_flags.__doc__ = f"{doc} With flags."
    with_via.__doc__ = f"{doc} With flags and a Via-branch choice (1, 2, auto or none)."
    return without_flags, with_flags, with_via


class Rtpengine(Module):
    name = "rtpengine"
    Params = RtpengineParams

    def init(self) -> None:
        p = self.params
        source = self.server.config.source
        try:
            sets = parse_sets(p.rtpengine_sock)
        except RelayConfigError as e:
            raise ConfigError(f"[modparam.rtpengine] rtpengine_sock: {e}", source) from None
        if sets and p.setid_default not in sets:
            raise ConfigError(
                f"[modparam.rtpengine] setid_default {p.setid_default} names no set "
                f"(sets: {sorted(sets)})",
                source,
            )
        self.relays = Relays(sets, float(p.rtpengine_disable_tout))
        self.client = NgClient(p.rtpengine_tout_ms, p.rtpengine_retr)

    async def start(self, nursery: trio.Nursery) -> None:
        # checked when serving, not at load: `ksr stubs` and `ksr check` load every module
        if not self.relays.sets:
            raise ConfigError(
                '[modparam.rtpengine] rtpengine_sock is empty: name a relay, e.g. "udp:127.0.0.1:2223"',
                self.server.config.source,
            )

    def stop(self) -> None:
        self.client.close()

    # -- one command, tried on relays until one takes it -----------------------------------
    def call(self, ctx: MsgContext | None, command: ng.Command) -> ng.Outcome | None:
        set_id = self.params.setid_default
        if ctx is not None:
            set_id = ctx.extra.get(_SET_KEY, set_id)
        tried: set[int] = set()
        now = time.monotonic()
        while len(tried) < self.params.queried_nodes_limit:
            relay = self.relays.choose(set_id, command.call_id, now, tried)
            if relay is None:
                log.error("rtpengine: no usable relay in set %d for %s", set_id, command.op)
                return None
            tried.add(relay.index)
            result = self._try(relay, command, now)
            if result is None or result.retry:
                continue
            if result.ok and command.call_id:
                if command.op == ng.DELETE:
                    self.relays.forget(command.call_id)
                else:
                    self.relays.remember(command.call_id, relay)
            return result
        log.error("rtpengine: %s tried %d relays, none took it", command.op, len(tried))
        return None

    def _exchange(self, relay: Relay, command: ng.Command) -> dict[bytes, Any] | None:
        if can_suspend():  # a request route: wait suspended, the worker goes on
            return cast(
                "dict[bytes, Any] | None", wait(lambda: self.client.exchange_async(relay, command))
            )
        return self.client.exchange(relay, command)

    def _try(self, relay: Relay, command: ng.Command, now: float) -> ng.Outcome | None:
        try:
            answer = self._exchange(relay, command)
        except ng.NgError as e:
            log.error("rtpengine %s: %s answered %s", relay.url, command.op, e)
            relay.fail(now, self.relays.disable_for)
            return None
        if answer is None:
            log.error(
                "rtpengine %s: no answer to %s, disabled for %ds",
                relay.url,
                command.op,
                self.params.rtpengine_disable_tout,
            )
            relay.fail(now, self.relays.disable_for)
            return None
        relay.succeed()
        result = ng.outcome(answer)
        if not result.ok:
            log.log(
                logging.WARNING if result.retry else logging.ERROR,
                "rtpengine %s: %s refused: %s",
                relay.url,
                command.op,
                result.reason,
            )
        return result

    # -- the message side ------------------------------------------------------------------
    def _run(self, ctx: MsgContext, op: str, flags: str | None, via: str | None = None) -> int:
        try:
            facts = _facts(ctx, op in (ng.OFFER, ng.ANSWER))
            if via is not None and via != "none":
                flags = f"{flags or ''} via-branch={via}"
            command = ng.build_command(op, flags, facts)
        except (ng.NgError, ValueError) as e:
            log.error("rtpengine %s: %s", op, e)
            return -1
        result = self.call(ctx, command)
        if result is None or not result.ok:
            return -1
        if command.op in (ng.OFFER, ng.ANSWER):
            sdp = result.answer.get(b"sdp")
            if not isinstance(sdp, bytes):
                log.error("rtpengine: the answer to %s carries no SDP", command.op)
                return -1
            ctx.add_lump(lambda m, _original: m.set_body(sdp))
        elif command.op == ng.QUERY:
            ctx.extra["rtpengine.query"] = ng.plain(result.answer)
        return 1

    def _manage(self, ctx: MsgContext, flags: str | None, via: str | None = None) -> int:
        op = _manage_op(ctx)
        return -1 if op is None else 1 if op == "" else self._run(ctx, op, flags, via)

    # -- KSR.rtpengine ---------------------------------------------------------------------
    @kemi(suspends=True)
    def rtpengine_manage0(self, ctx: MsgContext) -> int:
        """Offer, answer or delete, whichever the message calls for (as Kamailio decides)."""
        return self._manage(ctx, None)

    @kemi(suspends=True)
    def rtpengine_manage(self, ctx: MsgContext, flags: str) -> int:
        """rtpengine_manage with flags ("replace-origin replace-session-connection ...")."""
        return self._manage(ctx, flags)

    @kemi(suspends=True)
    def rtpengine_manage2(self, ctx: MsgContext, flags: str, viabranch: str) -> int:
        """rtpengine_manage with flags and a Via-branch choice (1, 2, auto or none)."""
        return self._manage(ctx, flags, viabranch)

    rtpengine_offer0, rtpengine_offer, rtpengine_offer2 = _forms(
        ng.OFFER, "Offer the message's SDP; the message gets the relay's SDP."
    )
    rtpengine_answer0, rtpengine_answer, rtpengine_answer2 = _forms(
        ng.ANSWER, "Answer with the message's SDP; the message gets the relay's SDP."
    )
    rtpengine_delete0, rtpengine_delete, rtpengine_delete2 = _forms(
        ng.DELETE, "End the call's media session on its relay."
    )
    rtpengine_query0, rtpengine_query, rtpengine_query2 = _forms(
        ng.QUERY, "Ask the relay about the call (rtpengine_query_v stores the answer)."
    )
    block_media0, block_media, block_media2 = _forms("block media", "Stop relaying media.")
    unblock_media0, unblock_media, unblock_media2 = _forms("unblock media", "Relay media again.")
    silence_media0, silence_media, silence_media2 = _forms(
        "silence media", "Relay silence instead of the media."
    )
    unsilence_media0, unsilence_media, unsilence_media2 = _forms(
        "unsilence media", "Relay the media unchanged again."
    )
    block_dtmf0, block_dtmf, block_dtmf2 = _forms("block DTMF", "Stop relaying DTMF events.")
    unblock_dtmf0, unblock_dtmf, unblock_dtmf2 = _forms("unblock DTMF", "Relay DTMF events again.")
    stop_media0, stop_media, stop_media2 = _forms("stop media", "Stop playing media into the call.")
    start_forwarding0, start_forwarding, start_forwarding2 = _forms(
        "start forwarding", "Forward the call's media to the recording daemon."
    )
    stop_forwarding0, stop_forwarding, stop_forwarding2 = _forms(
        "stop forwarding", "Stop forwarding the call's media."
    )
    rtpengine_connect0, rtpengine_connect, _ = _forms(
        "connect", "Connect two call legs on the relay (flags name the other call)."
    )
    _, play_media, play_media2 = _forms("play media", "Play media into the call (file=...).")
    _, play_dtmf, _ = _forms("play DTMF", "Inject DTMF into the call (code=..., duration=...).")
    start_recording, _, _ = _forms("start recording", "Ask the relay to record the call.")
    stop_recording, _, _ = _forms("stop recording", "Stop recording the call.")
    del _

    @kemi(suspends=True)
    def rtpengine_query_v(self, ctx: MsgContext, fmt: str, dpv: str) -> int:
        """Query the relay and store its answer as JSON ("j") in the variable dpv."""
        if fmt != "j":
            log.error('rtpengine_query_v: format %r unknown (ksr writes JSON: "j")', fmt)
            return -1
        if self._run(ctx, ng.QUERY, None) < 0:
            return -1
        answer = ctx.extra.pop("rtpengine.query", {})
        return 1 if self.server.pv.set(ctx, dpv, json.dumps(answer)) else -1

    @kemi()
    def set_rtpengine_set(self, ctx: MsgContext, r1: int) -> int:
        """Use relay set r1 for the commands of this message."""
        if r1 not in self.relays.sets:
            log.error("set_rtpengine_set: no relay set %d", r1)
            return -1
        ctx.extra[_SET_KEY] = r1
        return 1

    @kemi()
    def set_rtpengine_set2(self, ctx: MsgContext, r1: int, r2: int) -> int:
        """Use relay set r1 for this message (ksr uses one set per message; r2 is checked)."""
        if r2 not in self.relays.sets:
            log.error("set_rtpengine_set2: no relay set %d", r2)
            return -1
        return self.set_rtpengine_set(ctx, r1)

    # -- RPC -------------------------------------------------------------------------------
    def _named(self, params: list[object]) -> list[Relay]:
        if not params:
            raise RpcError(500, "Not enough parameters")
        relays = self.relays.matching(str(params[0]))
        if not relays:
            raise RpcError(404, "Instance not found")
        return relays

    @rpc("rtpengine.show")
    def rpc_show(self, *params: object) -> list[dict[str, object]]:
        """The relays named (a URL or "all"): set, weight, whether disabled and until when."""
        now = time.monotonic()
        return [
            {
                "url": r.url,
                "set": r.set_id,
                "index": r.index,
                "weight": r.weight,
                "disabled": 1 if r.forever else 0,
                "active": 0 if r.disabled else 1,
                "recheck_ticks": -1 if r.forever else max(0, int(r.recheck_at - now)),
            }
            for r in self._named(list(params))
        ]

    @rpc("rtpengine.ping")
    def rpc_ping(self, *params: object) -> dict[str, object]:
        """Ping the relays named; a relay that answers is enabled, one that does not disabled."""
        failed = False
        for relay in self._named(list(params)):
            failed |= not self._ping(relay)
        return {"url": str(params[0]), "status": "fail" if failed else "success"}

    @rpc("rtpengine.enable")
    def rpc_enable(self, *params: object) -> dict[str, object]:
        """Enable (1, after a ping that must succeed) or disable (0, until enabled) relays."""
        if len(params) < 2:
            raise RpcError(500, "Not enough parameters")
        relays = self._named(list(params))
        status = "enable" if int(str(params[1])) else "disable"
        for relay in relays:
            if status == "disable":
                relay.disabled = relay.forever = True
                continue
            relay.forever = False
            if not self._ping(relay):
                status = "fail"
        return {"url": str(params[0]), "status": status}

    def _ping(self, relay: Relay) -> bool:
        result = self._try(relay, ng.ping_command(), time.monotonic())
        return result is not None and result.ok


def _facts(ctx: MsgContext, with_sdp: bool) -> ng.MessageFacts:
    msg = ctx.msg
    from_tag = msg.from_tag
    if not from_tag:
        raise ValueError("the message has no From tag")
    return ng.MessageFacts(
        call_id=msg.call_id,
        from_tag=from_tag,
        to_tag=msg.to_tag,
        is_request=isinstance(msg, Request),
        src_ip=ctx.src_ip,
        sdp=_sdp(msg) if with_sdp else None,
        vias=[v.branch or "" for v in msg.vias],
    )


def _sdp(msg: Message) -> bytes | None:
    if not msg.body:
        return None
    ctype = (msg.get("content-type") or "application/sdp").lower()
    return msg.body if "application/sdp" in ctype else None


def _manage_op(ctx: MsgContext) -> str | None:
    """What rtpengine_manage does with this message (Kamailio's rules): an op, "" for
    nothing to do but success (branch failure route), None when the method has no media."""
    if ctx.route == RouteType.BRANCH_FAILURE:
        return ""  # the transaction's failure route deletes
    msg = ctx.msg
    method = ctx.method
    if method not in ("INVITE", "ACK", "CANCEL", "BYE", "UPDATE", "PRACK"):
        return None
    if method in ("CANCEL", "BYE"):
        return ng.DELETE
    has_sdp = _sdp(msg) is not None
    if isinstance(msg, Request):
        if method in ("ACK", "PRACK") and has_sdp:
            return ng.ANSWER
        if method == "UPDATE" and has_sdp:
            return ng.OFFER
        if method == "INVITE" and has_sdp:
            return ng.DELETE if ctx.route == RouteType.FAILURE else ng.OFFER
        return None
    assert isinstance(msg, Response)
    if msg.status >= 300:
        return ng.DELETE
    if not has_sdp:
        return None
    if method == "UPDATE":
        return ng.ANSWER
    request = getattr(ctx.tx, "request", None)
    if request is None or _sdp(request) is not None:
        return ng.ANSWER
    return ng.OFFER  # late offer: the INVITE had no SDP, the reply makes the offer


MODULE = Rtpengine
