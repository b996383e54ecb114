"""The UDP shells of the ng protocol: a command sent and re-sent until its answer (matched
by cookie) arrives or the tries run out (``rtpengine_tout_ms`` per try, ``rtpengine_retr``
tries).

``exchange_async`` runs on trio: a request route waits for it suspended (ksr.suspend) while the
worker goes on. ``exchange`` waits on the socket and serves where a route cannot be suspended
(reply routes, RPC), as Kamailio's module always does: a relay on the same host or LAN answers
in well under a millisecond, and one that does not answer is left out for a while (relays.py).
"""

from __future__ import annotations

import itertools
import os
import select
import socket
from typing import Any

import trio

from . import ng
from .relays import Relay


class NgClient:
    def __init__(self, timeout_ms: int, tries: int) -> None:
        self.timeout = max(timeout_ms, 1) / 1000
        self.tries = max(tries, 1)
        self._socks: dict[int, socket.socket] = {}
        self._seq = itertools.count(1)
        self._pid = os.getpid()

    def _sock(self, relay: Relay) -> socket.socket:
        s = self._socks.get(relay.index)
        if s is None:
            family = socket.AF_INET6 if ":" in relay.host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.connect((relay.host, relay.port))
            self._socks[relay.index] = s
        return s

    def _datagram(self, command: ng.Command) -> tuple[str, bytes]:
        cookie = f"{self._pid}_{next(self._seq)}_"
        return cookie, ng.datagram(cookie, command)

    async def exchange_async(self, relay: Relay, command: ng.Command) -> dict[bytes, Any] | None:
        """As ``exchange``, on trio, on a socket of its own (commands of routes waiting side by
        side never read each other's answers)."""
        cookie, data = self._datagram(command)
        family = socket.AF_INET6 if ":" in relay.host else socket.AF_INET
        try:
            with trio.socket.socket(family, socket.SOCK_DGRAM) as s:
                await s.connect((relay.host, relay.port))
                for _ in range(self.tries):
                    await s.send(data)
                    with trio.move_on_after(self.timeout):
                        while True:
                            answer = ng.answer_of_untrusted(cookie, await s.recv(0x40000))
                            if answer is not None:
                                return answer
        except OSError:
            pass
        return None

    def exchange(self, relay: Relay, command: ng.Command) -> dict[bytes, Any] | None:
        """The relay's answer; None when it did not answer (or the send failed). NgError when
        it answered with something that is not an ng answer."""
        cookie, data = self._datagram(command)
        try:
            s = self._sock(relay)
            _drain(s)  # late answers to earlier commands
            for _ in range(self.tries):
                s.send(data)
                answer = _await_answer(s, cookie, self.timeout)
                if answer is not None:
                    return answer
        except OSError:
            self.close(relay)
        return None

    def close(self, relay: Relay | None = None) -> None:
        for index in [relay.index] if relay is not None else list(self._socks):
            s = self._socks.pop(index, None)
            if s is not None:
                s.close()


def _drain(s: socket.socket) -> None:
    while True:
        try:
            s.recv(65536)
        except BlockingIOError:
            return


def _await_answer(s: socket.socket, cookie: str, timeout: float) -> dict[bytes, Any] | None:
    poller = select.poll()
    poller.register(s, select.POLLIN)
    while poller.poll(timeout * 1000):
        try:
            data = s.recv(0x40000)
        except BlockingIOError:
            continue
        answer = ng.answer_of_untrusted(cookie, data)
        if answer is not None:
            return answer
    return None
