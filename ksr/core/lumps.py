"""Lumps that rewrite header values, shared by the modules that change headers (pv, textops,
nathelper, siputils). A lump runs on the outgoing copy of the message (see context.py)."""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import TYPE_CHECKING

from ksr.sip.headers import NameAddr, parse_name_addr, split_commas
from ksr.sip.message import Header, Message

if TYPE_CHECKING:
    from .context import Lump


def rewrite_headers(key: str, change: Callable[[str], str | None], *, first_only: bool) -> Lump:
    """A lump giving each header named ``key`` (only the first one with ``first_only``) the value
    ``change`` returns for it; None leaves that header as it is."""

    def lump(m: Message, original: Container[int]) -> None:
        for i, h in enumerate(m.headers):
            if h.key != key:
                continue
            new = change(h.value)
            if new is not None:
                m.headers[i] = Header(h.name, new)
            if first_only:
                return

    return lump


def edit_first_name_addr(edit: Callable[[NameAddr], None]) -> Callable[[str], str]:
    """A ``change`` for rewrite_headers: ``edit`` changes the first name-addr of a
    comma-separated value (Contact), the others are kept."""

    def change(value: str) -> str:
        values = split_commas(value)
        na = parse_name_addr(values[0])
        edit(na)
        values[0] = str(na)
        return ", ".join(values)

    return change
