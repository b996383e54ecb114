"""The datagram transport of jsonrpcs: one JSON-RPC request per datagram on a unix datagram
socket (or ``udp:IP:PORT``); the reply goes back to the address the request came from.

A reply longer than one buffer (``CHUNK`` bytes, Kamailio's datagram buffer size) is sent as
consecutive datagrams that concatenate to the JSON document; ``ksr rpc`` reads until the
document is complete. Datagrams on a unix socket are reliable and keep their order.
"""

from __future__ import annotations

import errno
import grp
import json
import logging
import os
import pwd
import socket
import stat
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ksr.core.rpc import parse_address

log = logging.getLogger("ksr.jsonrpcs")

CHUNK = 65456  # Kamailio's JSONRPC_DGRAM_BUF_SIZE: replies up to this size are one datagram
MAX_REQUEST = 65535

Handler = Callable[[Any], Awaitable[dict[str, Any]]]


def parse_error_reply() -> dict[str, Any]:
    """The JSON-RPC 2.0 answer to a request that is not JSON."""
    return {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse Error"}, "id": None}


class SocketInUse(OSError):
    """Another running server answers on the socket path."""


def _is_live_unix_socket(path: str) -> bool:
    """True if some process has a socket bound at ``path`` (a stale file refuses the connect)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _owner_id(value: int | str, lookup: Callable[[str], Any]) -> int:
    if isinstance(value, int) or value.isdigit():
        return int(value)
    try:
        return int(lookup(value)[2])
    except KeyError:
        raise OSError(errno.EINVAL, f"no such user or group: {value}") from None


class DgramRpcServer:
    def __init__(
        self,
        spec: str,
        handler: Handler,
        render: Callable[[dict[str, Any]], str],
        mode: int = 0o660,
        user: int | str = "",
        group: int | str = "",
        timeout: float = 2.0,
    ) -> None:
        self.family, self.address = parse_address(spec)
        self.handler = handler
        self.render = render
        self.mode = mode
        self.user = user
        self.group = group
        self.timeout = timeout
        self.bound: Any = None  # the address actually bound (a udp port 0 becomes a number)
        self._inode: int | None = None  # to remove only our own socket file on stop

    def _bind(self) -> trio.socket.SocketType:
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            if self.family == socket.AF_UNIX:
                self._bind_unix(sock, self.address)
            else:
                sock.bind(self.address)
                self.bound = sock.getsockname()
        except SocketInUse:
            sock.close()
            raise
        except OSError as err:
            sock.close()
            self.remove_file()  # bound but chmod/chown failed
            raise OSError(
                err.errno,
                f"jsonrpcs: cannot bind dgram_socket {self.address}: {err.strerror or err}",
            ) from None
        return trio.socket.from_stdlib_socket(sock)

    def _bind_unix(self, sock: socket.socket, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(errno.EEXIST, "the file exists and is not a socket")
            if _is_live_unix_socket(path):
                raise SocketInUse(errno.EADDRINUSE, f"another server is answering on {path}")
            os.unlink(path)  # a stale socket left by a server that did not stop cleanly
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.bind(path)
        self._inode = os.lstat(path).st_ino
        self.bound = path
        os.chmod(path, self.mode)
        if self.user != "" or self.group != "":
            uid = _owner_id(self.user, pwd.getpwnam) if self.user != "" else -1
            gid = _owner_id(self.group, grp.getgrnam) if self.group != "" else -1
            os.chown(path, uid, gid)

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = self._bind()
        try:
            task_status.started()
            while True:
                data, addr = await sock.recvfrom(MAX_REQUEST)
                await self._answer(sock, data, addr)
        finally:
            sock.close()
            self.remove_file()

    async def _answer(self, sock: trio.socket.SocketType, data: bytes, addr: Any) -> None:
        text = data.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            request = json.loads(text)
        except ValueError:
            reply = parse_error_reply()
        else:
            reply = await self.handler(request)
        if not addr:
            log.debug("RPC request from an unbound client socket: no reply address")
            return
        body = self.render(reply).encode()
        with trio.move_on_after(self.timeout) as scope:
            for off in range(0, len(body), CHUNK):
                try:
                    await sock.sendto(body[off : off + CHUNK], addr)
                except OSError as err:  # the client went away: nothing to answer to
                    log.warning("cannot send the RPC reply to %s: %s", addr, err)
                    return
        if scope.cancelled_caught:
            log.warning("RPC reply to %s not sent within dgram_timeout", addr)

    def remove_file(self) -> None:
        """Remove the socket file if it is still the one this server created."""
        if self.family != socket.AF_UNIX or self._inode is None:
            return
        try:
            if os.lstat(self.address).st_ino == self._inode:
                os.unlink(self.address)
        except FileNotFoundError:
            pass
        self._inode = None
