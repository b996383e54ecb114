"""``KSR.maxfwd.process_maxfwd`` compiled (its binding calls ``Processor``; the module's method
stays the reference): asked once per request by most routing scripts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from ksr.core.context import ReplaceHeader
from ksr.sip.abnf import uint
from ksr.sip.message import Header, Message

if TYPE_CHECKING:
    from ksr.core.context import MsgContext

log = logging.getLogger("ksr.maxfwd")

DONE_KEY: Final = "maxfwd_value"  # ctx.extra: the answer given (one change per message)
# the values 0-255 as written without leading zeros (what senders write: "70"): a dict lookup
# instead of reading the digits; other texts go through uint
PLAIN: Final[dict[str, int]] = {str(n): n for n in range(256)}


class AddMaxForwards:
    """The lump adding ``Max-Forwards: <text>`` first to a request that had none."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, m: Message, original: object) -> None:
        m.headers.insert(0, Header("Max-Forwards", self.text))


class Processor:
    """process_maxfwd(limit) with the module's max_limit (see the module's method)."""

    def __init__(self, max_limit: int) -> None:
        self.max_limit = max_limit

    def __call__(self, ctx: MsgContext, limit: int) -> int:
        msg = ctx.msg
        if not msg.is_request or limit < 0 or limit > 255:
            return -2
        done = ctx.extra.get(DONE_KEY)
        if done is not None:
            return int(done)  # one change per message
        hdr = msg.first("max-forwards")
        if hdr is None:
            ctx.add_lump(AddMaxForwards(str(limit)))
            ctx.extra[DONE_KEY] = 2
            return 2
        val = PLAIN.get(hdr.value)
        if val is None:
            val = uint(hdr.value, 255)
            if val is None:
                log.debug("malformed Max-Forwards from %s:%d", ctx.src_ip, ctx.src_port)
                return -2
        if val == 0:
            return -1
        new = val - 1
        top = self.max_limit
        if new > top:
            new = top
        ctx.lumps.append(ReplaceHeader(hdr, str(new)))
        ctx.extra[DONE_KEY] = 1
        return 1
