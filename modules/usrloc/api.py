"""usrloc's API for other modules (registrar, nathelper), as Kamailio's ``usrloc_api_t``.

Obtained in ``init``: ``ul = self.require("usrloc", UsrlocApi)``. The location tables
(``Domain``: ``get``/``put``/``remove``/``all``) and their ``Contact`` rows are part of it;
nothing else of usrloc is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .contact import ALL_METHODS, Contact, RuidMaker
from .domain import Domain, UsrlocError
from .rpc_shapes import aor_hash, order_key

if TYPE_CHECKING:
    from . import Usrloc

__all__ = [
    "ALL_METHODS",
    "Contact",
    "Domain",
    "ExpiredCallback",
    "UsrlocApi",
    "UsrlocError",
    "aor_hash",
    "order_key",
]

# fn(table, contact): a contact expired (Kamailio's UL_CONTACT_EXPIRE callback)
ExpiredCallback = Callable[[str, Contact], None]


class UsrlocApi:
    """What other modules use of usrloc. Compiled (ksr/native.py): registrar's save() calls
    it several times per REGISTER, each a C call where a Python method was a frame."""

    def __init__(self, ul: Usrloc) -> None:
        self._ul = ul
        # made once with usrloc, never replaced: read here without a lookup on usrloc
        self._ruids: RuidMaker = ul.ruids
        self._domains: dict[str, Domain] = ul.domains

    # the properties and methods go to usrloc's fields directly: one read instead of a call

    @property
    def use_domain(self) -> bool:
        return bool(self._ul.params.use_domain)

    @property
    def stores(self) -> bool:
        """Whether location calls reach a database (db_mode 1-3), so may wait on it."""
        return bool(self._ul.params.db_mode)

    @property
    def server_id(self) -> int:
        """This node's id for the rows it writes (``Usrloc.server_id``)."""
        ul = self._ul
        return ul.params.server_id or ul.server.config.core.server_id

    @property
    def nat_flag(self) -> int:
        """The branch-flag mask of ``nat_bflag`` (0 when unset)."""
        return self._ul.nat_flag

    def now(self) -> float:
        """usrloc's clock (expiry times are on it)."""
        return self._ul.now()

    def domain(self, name: str) -> Domain:
        """The location table ``name`` (Kamailio's ``get_udomain``/``register_udomain``)."""
        d = self._domains.get(name)
        return d if d is not None else self._ul.domain(name)

    def read_bindings(self, d: Domain, aor: str) -> list[Contact]:
        """``d.read(aor)``; a memory-only table (db_mode 0) is read here, compiled: no
        Python frame per REGISTER."""
        if d.db_mode != 0:
            return d.read(aor)
        cs = d.mem.get(aor)  # db_mode 0 is loaded from the start
        return list(cs.values()) if cs else []

    def put_binding(self, d: Domain, c: Contact, mem_only: bool = False) -> None:
        """``d.put(c, mem_only)``; a memory-only table (db_mode 0) is written here, as
        ``Domain.put`` writes it (``Domain.store``, then ``share_put`` in a shared table)."""
        if d.db_mode != 0:
            d.put(c, mem_only=mem_only)
            return
        mem = d.mem
        cs = mem.get(c.aor)
        if cs is None:
            cs = mem[c.aor] = {}
        cs[c.ruid] = c
        if "_replica" in d.__dict__:
            d.share_put(c)

    def new_ruid(self) -> str:
        return self._ruids.next()

    def on_expired(self, fn: ExpiredCallback) -> None:
        """Call ``fn(table, contact)`` for every contact the expiry timer removes."""
        self._ul.expired_callbacks.append(fn)

    def live_contacts(self, cflags: int = 0) -> list[tuple[Domain, Contact]]:
        """Every unexpired contact whose branch flags include ``cflags`` (``get_all_ucontacts``)."""
        return self._ul.live_contacts(cflags)

    def expire_soon(self, d: Domain, c: Contact, seconds: float) -> None:
        """Make ``c`` expire within ``seconds`` (a contact that stopped answering keepalives)."""
        self._ul.expire_soon(d, c, seconds)
