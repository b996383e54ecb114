"""Listening sockets that several worker processes share with SO_REUSEPORT (ksr/workers.py).

The kernel hashes each connection (TCP) or datagram flow (UDP) by the peer's address to one of
the sockets bound to the port, so one peer keeps talking to one worker.
"""

from __future__ import annotations

import socket

import trio


def tcp_listener(ip: str, port: int, backlog: int = 1024) -> trio.SocketListener:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((ip, port))
        s.listen(backlog)
    except OSError:
        s.close()
        raise
    return trio.SocketListener(trio.socket.from_stdlib_socket(s))
