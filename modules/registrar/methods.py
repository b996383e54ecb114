"""SIP methods as Kamailio's bit mask (stored per contact from the REGISTER's Allow)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ksr.modules.usrloc.api import ALL_METHODS
from ksr.sip.headers import split_commas

METHOD_BITS: Final[dict[str, int]] = {
    "INVITE": 1,
    "CANCEL": 2,
    "ACK": 4,
    "BYE": 8,
    "INFO": 16,
    "REGISTER": 32,
    "SUBSCRIBE": 64,
    "NOTIFY": 128,
    "MESSAGE": 256,
    "OPTIONS": 512,
    "PRACK": 1024,
    "UPDATE": 2048,
    "REFER": 4096,
    "PUBLISH": 8192,
    "KDMQ": 16384,
}
METHOD_OTHER: Final = 32768


def method_bit(method: str) -> int:
    return METHOD_BITS.get(method.upper(), METHOD_OTHER)


def methods_from_allow(values: Sequence[str]) -> int:
    """The mask for the Allow header values; no Allow header means every method."""
    if not values:
        return ALL_METHODS
    mask = 0
    for v in values:
        for m in split_commas(v):
            if m.strip():
                mask |= method_bit(m.strip())
    return mask
