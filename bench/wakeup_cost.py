"""Instructions one UDP datagram costs a Python echo server, by the way it waits: a blocking
``recvfrom`` (as Kamailio's workers wait), trio's ``wait_readable`` with a drain that ends in
a read raising BlockingIOError, and trio with FIONREAD deciding (as ksr's UDP loop does since
the ninth session). Each server answers one datagram at a time, as at a low rate: the figure
is what each wake-up costs beside the routing. valgrind callgrind, server process only.

    python -m bench.wakeup_cost [--count 300] [--modes block,trio-eagain,trio-fionread,trio-idle]

``trio-idle``: trio run with ksr's serving clock (ksr/core/idle_wait.py), which reads the
socket itself while trio sleeps, as ``ksr run`` does since the eleventh session.
"""

from __future__ import annotations

import argparse
import array
import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import termios
import time

from .callgrind import _control, _totals, valgrind

CLIENT = """
import socket, sys, time
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
port, count = int(sys.argv[1]), int(sys.argv[2])
time.sleep(1.0)
for _ in range(count + 1):  # the first one is not counted
    c.sendto(b"x" * 400, ("127.0.0.1", port))
    c.recv(2000)
    time.sleep(0.002)
c.sendto(b"q", ("127.0.0.1", port))
"""


def serve(mode: str, count: int) -> None:
    """Runs under valgrind: answers ``count`` + 1 datagrams, counting all but the first."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(s.getsockname()[1]), str(count)])
    pid = str(os.getpid())
    if mode == "block":
        data, addr = s.recvfrom(65535)
        s.sendto(data, addr)
        _control("-i", "on", pid)
        while True:
            data, addr = s.recvfrom(65535)
            if data == b"q":
                break
            s.sendto(data, addr)
    else:
        import trio

        s.setblocking(False)
        queued = array.array("i", [0])
        fionread = mode == "trio-fionread"

        async def loop() -> None:
            first = True
            while True:
                await trio.lowlevel.wait_readable(s)
                while True:
                    try:
                        data, addr = s.recvfrom(65535)
                    except BlockingIOError:
                        break
                    if data == b"q":
                        return
                    s.sendto(data, addr)
                    if first:
                        first = False
                        _control("-i", "on", pid)
                    if fionread:
                        fcntl.ioctl(s.fileno(), termios.FIONREAD, queued, True)
                        if not queued[0]:
                            break

        if mode == "trio-idle":
            from ksr.core.idle_wait import IdleWaitClock, read_when_idle

            scope = trio.CancelScope()
            first = [True]

            def read() -> None:  # what ksr's UdpReader does for a lone datagram
                data, addr = s.recvfrom(65535)
                if data == b"q":
                    scope.cancel()
                    return
                s.sendto(data, addr)
                if first[0]:
                    first[0] = False
                    _control("-i", "on", pid)
                fcntl.ioctl(s.fileno(), termios.FIONREAD, queued, True)

            async def idle() -> None:
                with scope, read_when_idle(s.fileno(), read):
                    while True:
                        await trio.lowlevel.wait_readable(s)
                        read()

            trio.run(idle, clock=IdleWaitClock())
        else:
            trio.run(loop)
    _control("-i", "off", pid)
    client.wait()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--modes", default="block,trio-eagain,trio-fionread,trio-idle")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ksr-wake-") as tmp:
        for mode in args.modes.split(","):
            out = f"{tmp}/{mode}.out"
            cmd = [*valgrind(out), sys.executable, "-m", "bench.wakeup_cost", "_serve", mode]
            subprocess.run([*cmd, str(args.count)], check=True, capture_output=True)
            time.sleep(0.2)
            ir = _totals(out)
            print(f"{mode:14} {ir / args.count:>9,.0f} instructions per datagram")


if __name__ == "__main__":
    main()
