"""lookup(): turn an AOR into its registered contacts — the R-URI gets the best one, the rest
become branches (Kamailio's lookup.c semantics).

Compiled (ksr/native.py): an INVITE's ``KSR.registrar.lookup`` calls ``Lookup`` (``via``), a
C call where the module's method, this module's functions and usrloc's ``get`` were about ten
interpreted frames in four modules, each with its code and module dict to bring in from memory
when a message arrives to cold caches (bench/README.md)."""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import TYPE_CHECKING, Final

from ksr.core.context import Branch, MsgContext, SocketInfo
from ksr.modules.usrloc.api import Contact, UsrlocError, order_key
from ksr.sip.errors import RemoteProtocolError
from ksr.sip.headers import parse_name_addr, split_commas
from ksr.sip.message import Message

from . import errors
from .methods import method_bit
from .parse import aor_of

if TYPE_CHECKING:
    from . import Registrar

log = logging.getLogger("ksr.registrar")

FOUND: Final = 1
NOT_FOUND: Final = -1
METHOD_FILTERED: Final = -2
ERROR: Final = -3


AORS_MAX: Final = 2048  # AORs kept by R-URI text; past that the table starts again


def valid_contacts(reg: Registrar, table: str, uri: str) -> list[Contact] | int:
    """The live contacts of the AOR of ``uri`` in lookup order, or a negative return code."""
    use_domain = reg.usrloc.use_domain
    realm_prefix = reg.params.realm_prefix
    case_sensitive = bool(reg.params.case_sensitive)
    # a new call's R-URI is the callee's address, the same text for each call to it: its
    # AOR is worked out (a URI parse) once per text and these settings
    seen = reg.aors_seen
    key = (uri, use_domain, realm_prefix, case_sensitive)
    aor = seen.get(key)
    if aor is None:
        try:
            aor = aor_of(uri, use_domain, realm_prefix, case_sensitive)
        except errors.RegError:
            return NOT_FOUND
        if len(seen) >= AORS_MAX:
            seen.clear()
        seen[key] = aor
    ul = reg.usrloc
    try:
        # the stored bindings themselves, read only (usrloc never changes one in place): no
        # copy per contact, and a memory-only table is read by usrloc's compiled API
        contacts = ul.read_bindings(ul.domain(table), aor)
    except UsrlocError as err:
        log.error("registrar: lookup of %s in %s failed: %s", aor, table, err)
        return ERROR
    now = ul.now()
    live = [c for c in contacts if not c.expired(now)]
    if len(live) > 1:
        live.sort(key=order_key)
    return live


def _first_path_uri(path: str) -> str | None:
    try:
        return parse_name_addr(split_commas(path)[0]).uri_text
    except (RemoteProtocolError, IndexError):
        return None


def _dst_of(c: Contact) -> str | None:
    if c.path:
        return _first_path_uri(c.path)
    return c.received or None


class PathRoutes:
    """The lump putting a stored Path's entries as Route headers after the request's Vias."""

    def __init__(self, routes: list[str]) -> None:
        self.routes = routes

    def __call__(self, m: Message, original: Container[int]) -> None:
        headers = m.headers
        at = len(headers)
        for i in range(len(headers)):
            if headers[i].key != "via":
                at = i
                break
        for r in reversed(self.routes):
            m.insert_header("Route", r, at)


def _add_route_lump(ctx: MsgContext, path: str) -> None:
    """The stored Path becomes the Route set of the request to the contact (RFC 3327 §5.3)."""
    ctx.add_lump(PathRoutes(split_commas(path)))


def lookup(
    reg: Registrar, ctx: MsgContext, table: str, uri: str | None, to_dset: bool = False
) -> int:
    target = uri or ctx.ruri or ""
    found = valid_contacts(reg, table, target)
    if isinstance(found, int):
        return found
    if not found:
        return NOT_FOUND
    contacts = found
    if reg.params.method_filtering and ctx.is_request:
        bit = method_bit(ctx.method)
        contacts = [c for c in found if c.methods & bit]
        if not contacts:
            return METHOD_FILTERED
    rest = contacts
    if not to_dset:
        first, rest = contacts[0], contacts[1:]
        ctx.ruri = first.contact
        ctx.dst_uri = _dst_of(first)
        if first.path:
            _add_route_lump(ctx, first.path)
        ctx.bflags |= first.cflags
        sock = _socket(ctx, first.socket)
        if sock is not None:
            ctx.send_socket = sock
        if not reg.params.append_branches:
            return FOUND
    for c in rest:
        ctx.branches.append(
            Branch(
                uri=c.contact,
                dst_uri=_dst_of(c),
                q=c.q,
                path=c.path or None,
                flags=c.cflags,
                socket=_socket(ctx, c.socket),
                ruid=c.ruid,
                instance=c.instance,
                location_ua=c.user_agent,
            )
        )
    return FOUND


class Lookup:
    """``KSR.registrar.lookup(table)`` as its binding calls it (``via``); the module's method
    stays the reference and gives the same answers."""

    def __init__(self, reg: Registrar) -> None:
        self.reg = reg

    def __call__(self, ctx: MsgContext, table: str) -> int:
        return lookup(self.reg, ctx, table, None)


def _socket(ctx: MsgContext, text: str) -> SocketInfo | None:
    if not text:
        return None
    for s in ctx.server.listeners:
        if str(s) == text:
            return s
    return None
