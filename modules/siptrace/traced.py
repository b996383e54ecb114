"""Which calls and transactions are being traced (sans-IO: the caller passes the time).

sip_trace() in transaction mode traces every message with the same Call-ID and CSeq number
(the request, its branches, replies, its CANCEL and ACK); dialog mode every message with the
same Call-ID until the dialog ends (a final reply to its BYE) or stays quiet too long. The
messages leaving ksr are bytes: the two keys are read from them without a full parse.
"""

from __future__ import annotations

import re
from collections import OrderedDict

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)
_CSEQ = re.compile(rb"^cseq[ \t]*:[ \t]*(\d+)[ \t]+([^\s]+)", re.I | re.M)

TRANSACTION_TTL = 120.0  # longer than any transaction (64*T1 plus Timer D)
DIALOG_IDLE_TTL = 7200.0  # a traced dialog nobody ended is forgotten after this quiet time
AFTER_BYE = 5.0  # a dialog's last messages (the BYE's reply retransmissions)


def keys_of(data: bytes) -> tuple[str, int, str, int] | None:
    """(Call-ID, CSeq number, CSeq method, status or 0) of raw SIP bytes, None if unreadable."""
    m = _HEAD_END.search(data)
    head = data if m is None else data[: m.start() + 2]
    cid = _CALL_ID.search(head)
    cseq = _CSEQ.search(head)
    if cid is None or cseq is None:
        return None
    status = 0
    if head.startswith(b"SIP/2.0 ") and head[8:11].isdigit():
        status = int(head[8:11])
    return (
        cid.group(1).decode("utf-8", "replace"),
        int(cseq.group(1)),
        cseq.group(2).decode("ascii", "replace").upper(),
        status,
    )


class TracedSet:
    """Traced transactions and dialogs, each with where its copies go (a capture URI)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        # key -> (expiry, capture URI)
        self.transactions: OrderedDict[tuple[str, int], tuple[float, str]] = OrderedDict()
        self.dialogs: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self.transactions or self.dialogs)

    def add_transaction(self, call_id: str, cseq: int, uri: str, now: float) -> None:
        self.transactions[(call_id, cseq)] = (now + TRANSACTION_TTL, uri)
        self.transactions.move_to_end((call_id, cseq))
        if len(self.transactions) > self.max_entries:
            self.transactions.popitem(last=False)

    def add_dialog(self, call_id: str, uri: str, now: float) -> None:
        self.dialogs[call_id] = (now + DIALOG_IDLE_TTL, uri)
        self.dialogs.move_to_end(call_id)
        if len(self.dialogs) > self.max_entries:
            self.dialogs.popitem(last=False)

    def match(self, call_id: str, cseq: int, method: str, status: int, now: float) -> str | None:
        """The capture URI if this message belongs to something traced, else None. Keeps a
        dialog alive; a final reply to its BYE ends it shortly after."""
        d = self.dialogs.get(call_id)
        if d is not None:
            end, uri = d
            if end <= now:
                del self.dialogs[call_id]
            else:
                if method == "BYE" and status >= 200:  # ending: never pushed further
                    self.dialogs[call_id] = (min(end, now + AFTER_BYE), uri)
                elif end > now + AFTER_BYE:
                    self.dialogs[call_id] = (now + DIALOG_IDLE_TTL, uri)
                return uri
        t = self.transactions.get((call_id, cseq))
        if t is not None:
            if t[0] <= now:
                del self.transactions[(call_id, cseq)]
                return None
            return t[1]
        return None

    def expire(self, now: float) -> None:
        for k in [k for k, (end, _) in self.transactions.items() if end <= now]:
            del self.transactions[k]
        for c in [c for c, (end, _) in self.dialogs.items() if end <= now]:
            del self.dialogs[c]
