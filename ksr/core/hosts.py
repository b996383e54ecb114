"""What the send path asks about a host, remembered per worker: may we send to it, is it an IP
literal (names are resolved by ``resolver.py``). Parsing with ``ipaddress`` costs microseconds
and every relayed message asks, about the same few hosts over and over."""

from __future__ import annotations

import ipaddress

MAX_ENTRIES = 4096  # per table; a full table starts over (hostile input cannot grow it)


class HostTable:
    def __init__(self) -> None:
        self._forbidden: dict[str, bool] = {}
        self._literal: dict[str, bool] = {}

    def forbidden(self, host: str) -> bool:
        """True for targets a SIP message must never go to (multicast, unspecified, broadcast)."""
        hit = self._forbidden.get(host)
        if hit is None:
            if len(self._forbidden) >= MAX_ENTRIES:
                self._forbidden.clear()
            hit = self._forbidden[host] = forbidden_target(host)
        return hit

    def is_ip(self, host: str) -> bool:
        """``host`` (brackets stripped) is an IPv4 or IPv6 literal."""
        hit = self._literal.get(host)
        if hit is None:
            if len(self._literal) >= MAX_ENTRIES:
                self._literal.clear()
            try:
                ipaddress.ip_address(host)
                hit = True
            except ValueError:
                hit = False
            self._literal[host] = hit
        return hit


def forbidden_target(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if ip.version == 4 and (str(ip) == "255.255.255.255" or str(ip) == "0.0.0.0"):
        return True
    return ip.is_multicast or ip.is_unspecified
