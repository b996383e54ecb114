"""The UDP shell of the ng protocol: one socket per relay, a command sent and re-sent until
its answer (matched by cookie) arrives or the tries run out.

The exchange waits on the socket (``rtpengine_tout_ms`` per try, ``rtpengine_retr`` tries), as
Kamailio's module does: a relay on the same host or LAN answers in well under a millisecond,
and a relay that does not answer is disabled (relays.py) so later calls do not wait for it.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
from typing import Any

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

    def exchange(self, relay: Relay, command: ng.Command) -> dict[bytes, Any] | None:
        """The relay's answer; None when it did not answer (or the send failed). NgError when
        it answered with something that is not an ng answer."""
        cookie = f"{self._pid}_{next(self._seq)}_"
        data = ng.datagram(cookie, command)
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
