"""The media relays ksr controls, in sets, with weights, and which one takes a call.

``rtpengine_sock`` is Kamailio's: ``"udp:127.0.0.1:2223"``, several URLs separated by spaces,
each optionally ``=weight``, the whole optionally prefixed by ``"<set id> == "``; one string per
set (a list of strings for several sets). A call goes to a relay chosen by its Call-ID among
the usable relays of the active set, weighted, and stays there for its later commands. A relay
that does not answer is disabled for ``rtpengine_disable_tout`` seconds, then tried again.
Sans-IO: the current time is passed in.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_PORT = 2223
STICKY_CALLS = 100_000  # calls whose relay is remembered (the oldest forgotten first)


class RelayConfigError(ValueError):
    """An ``rtpengine_sock`` value ksr cannot read; the message says which part and why."""


@dataclass(slots=True)
class Relay:
    url: str
    host: str
    port: int
    set_id: int
    index: int
    weight: int = 1
    disabled: bool = False
    forever: bool = False  # disabled by rtpengine.enable 0: only the RPC enables it again
    recheck_at: float = 0.0

    def usable(self, now: float) -> bool:
        return not self.disabled or (not self.forever and now >= self.recheck_at)

    def fail(self, now: float, disable_for: float) -> None:
        if not self.forever:
            self.disabled, self.recheck_at = True, now + disable_for

    def succeed(self) -> None:
        if not self.forever:
            self.disabled, self.recheck_at = False, 0.0


def parse_sets(values: list[str]) -> dict[int, list[Relay]]:
    sets: dict[int, list[Relay]] = {}
    index = 0
    for value in values:
        set_id, eq, urls = value.partition("==")
        if eq:
            try:
                sid = int(set_id.strip())
            except ValueError:
                raise RelayConfigError(f"set id {set_id.strip()!r} is not a number") from None
        else:
            sid, urls = 0, value
        for word in urls.replace(";", " ").split():
            relay = _parse_url(word, sid, index)
            sets.setdefault(sid, []).append(relay)
            index += 1
    return sets


def _parse_url(word: str, set_id: int, index: int) -> Relay:
    url, _, weight = word.partition("=")
    scheme, colon, rest = url.partition(":")
    if not colon or scheme not in ("udp", "udp6"):
        raise RelayConfigError(f"{word!r}: ksr speaks ng over UDP: write udp:HOST:PORT")
    host, port = _host_port(word, rest)
    try:
        w = int(weight) if weight else 1
    except ValueError:
        raise RelayConfigError(f"{word!r}: weight {weight!r} is not a number") from None
    return Relay(url, host, port, set_id, index, max(w, 0))


def _host_port(word: str, text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, tail = text[1:].partition("]")
        port = tail.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host or (port and not port.isdigit()):
        raise RelayConfigError(f"{word!r}: write udp:HOST:PORT")
    return host, int(port) if port else DEFAULT_PORT


class Relays:
    """Every configured relay, the sticky call → relay table, and the choice of a relay."""

    def __init__(self, sets: dict[int, list[Relay]], disable_for: float) -> None:
        self.sets = sets
        self.disable_for = disable_for
        self._sticky: OrderedDict[str, Relay] = OrderedDict()

    def all(self) -> list[Relay]:
        return [r for relays in self.sets.values() for r in relays]

    def matching(self, url: str) -> list[Relay]:
        """Relays named by an RPC argument: a URL or ``all``."""
        return self.all() if url == "all" else [r for r in self.all() if r.url == url]

    def choose(self, set_id: int, call_id: str, now: float, tried: set[int]) -> Relay | None:
        relay = self._sticky.get(call_id)
        if relay is not None and relay.index not in tried and relay.usable(now):
            return relay
        usable = [
            r
            for r in self.sets.get(set_id, ())
            if r.index not in tried and r.weight > 0 and r.usable(now)
        ]
        if not usable:
            return None
        point = zlib.crc32(call_id.encode()) % sum(r.weight for r in usable)
        for r in usable:
            point -= r.weight
            if point < 0:
                return r
        return usable[-1]

    def remember(self, call_id: str, relay: Relay) -> None:
        self._sticky[call_id] = relay
        self._sticky.move_to_end(call_id)
        while len(self._sticky) > STICKY_CALLS:
            self._sticky.popitem(last=False)

    def forget(self, call_id: str) -> None:
        self._sticky.pop(call_id, None)
