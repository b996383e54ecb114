"""systemd's readiness protocol (sd_notify): one datagram of ``KEY=value`` lines to the unix
socket named by ``$NOTIFY_SOCKET``, for a ``Type=notify`` unit.

ksr sends ``READY=1`` once it listens, ``RELOADING=1`` (with ``MONOTONIC_USEC``) then
``READY=1`` around a script reload, and ``STOPPING=1`` when it stops. With ``-n N`` each worker
sends to its supervisor, which tells systemd once all of them are ready (ksr/workers.py).
Without ``$NOTIFY_SOCKET`` (not started by systemd) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("ksr.sdnotify")


def message(**fields: str | int) -> bytes:
    """``message(READY=1, STATUS="...")`` as the datagram's bytes."""
    return "".join(f"{k}={v}\n" for k, v in fields.items()).encode()


def address(name: str) -> str:
    """$NOTIFY_SOCKET as an AF_UNIX address: a leading ``@`` is the abstract namespace."""
    return "\0" + name[1:] if name.startswith("@") else name


def notify(**fields: str | int) -> bool:
    """Send ``fields`` to $NOTIFY_SOCKET; False when there is none or it cannot be reached
    (logged once per call: a missing notification makes systemd time the unit out)."""
    name = os.environ.get("NOTIFY_SOCKET", "")
    if not name:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.setblocking(False)  # never stall the server on a reader that does not read
            s.sendto(message(**fields), address(name))
    except OSError as err:
        log.warning("sd_notify to %s failed: %s", name, err)
        return False
    return True


def ready(status: str = "") -> bool:
    return notify(READY=1, STATUS=status) if status else notify(READY=1)


def reloading() -> bool:
    # MONOTONIC_USEC: systemd >= 253 wants it with RELOADING=1 to tell reloads apart
    return notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)


def stopping() -> bool:
    return notify(STOPPING=1)


def parse(datagram: bytes) -> dict[str, str]:
    """The fields of one notification (what a supervisor receives from its workers)."""
    out: dict[str, str] = {}
    for line in datagram.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def bind(path: str) -> socket.socket:
    """A non-blocking datagram socket at ``path`` to pass to a child as its $NOTIFY_SOCKET."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    s.bind(path)
    s.setblocking(False)
    return s


def receive(s: socket.socket) -> list[dict[str, str]]:
    """Every notification waiting on ``s``, in the order sent."""
    out = []
    while True:
        try:
            out.append(parse(s.recv(4096)))
        except BlockingIOError:
            return out
