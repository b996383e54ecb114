"""``ksr rpc``: send one JSON-RPC command to a running server over its datagram socket.

    ksr rpc core.uptime
    ksr rpc stats.get_statistics core:
    ksr rpc --socket /run/ksr/rpc.sock ul.lookup location s:1001@example.com

Parameters that look like numbers are sent as numbers (as kamcli does with ``i:5``); ``s:``
forces a string and ``i:`` an integer. Exit status: 0 result printed, 1 the server answered an
error, 2 no server answers on the socket (or a bad command line).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import tempfile
import time
from typing import Any

from ksr.core.rpc import parse_address
from ksr.core.rundir import RUN_SOCKET, client_rpc_socket

DEFAULT_SOCKET = RUN_SOCKET  # or /tmp/ksr_rpc.sock (ksr/core/rundir.py)
RECV_BUF = 1 << 20


def convert_param(text: str) -> Any:
    """``s:x`` → "x", ``i:5`` → 5, ``5`` → 5, ``1.5`` → 1.5, anything else stays a string."""
    if text.startswith("s:"):
        return text[2:]
    if text.startswith("i:"):
        return int(text[2:])
    try:
        return int(text)
    except ValueError:
        pass
    try:
        f = float(text)
    except ValueError:
        return text
    return f if f == f and f not in (float("inf"), float("-inf")) else text


def default_socket() -> str:
    """$KSR_RPC_SOCKET, else the jsonrpcs default: /run/ksr/ksr_rpc.sock when it exists, else
    /tmp/ksr_rpc.sock (the server chooses between the same two)."""
    return client_rpc_socket()


def socket_from_config(path: str) -> str:
    """The dgram_socket of ``[modparam.jsonrpcs]`` in a configuration file (default if unset)."""
    from ksr.core.config import load_config

    cfg = load_config(path)
    spec = str(cfg.modparam.get("jsonrpcs", {}).get("dgram_socket") or default_socket())
    if spec.startswith("udp:") or spec.startswith("/"):
        return spec
    return str(cfg.resolve(spec))


def build_request(method: str, params: list[str], rid: int) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params:
        req["params"] = [convert_param(p) for p in params]
    req["id"] = rid
    return req


def call(spec: str, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send ``request`` and return the decoded reply. Raises ConnectionError when nobody answers
    on the socket, TimeoutError when the server does not reply in time."""
    family, address = parse_address(spec)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    local: str | None = None
    try:
        if family == socket.AF_UNIX:
            # the server answers to our bound address, so bind a private path first
            local = os.path.join(
                tempfile.gettempdir(),
                f"ksr_rpc_reply_{os.getpid()}_{random.randrange(1 << 30)}.sock",
            )
            sock.bind(local)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            sock.sendto(json.dumps(request).encode(), address)
        except (FileNotFoundError, ConnectionRefusedError) as err:
            raise ConnectionError(str(err)) from None
        return _read_reply(sock, timeout)
    finally:
        sock.close()
        if local is not None:
            try:
                os.unlink(local)
            except FileNotFoundError:
                pass


def _read_reply(sock: socket.socket, timeout: float) -> dict[str, Any]:
    """A long reply arrives as several datagrams: read until they form one JSON document."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete reply" if buf else "no reply")
        sock.settimeout(left)
        try:
            data = sock.recv(RECV_BUF)
        except TimeoutError:
            continue
        except ConnectionRefusedError as err:  # udp: nobody on that port
            raise ConnectionError(str(err)) from None
        buf += data
        try:
            doc = json.loads(buf.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict):
            return doc
        raise ValueError("the reply is not a JSON object")


def main(args: argparse.Namespace) -> int:
    if args.socket:
        spec = args.socket
    elif args.config:
        try:
            spec = socket_from_config(args.config)
        except Exception as err:  # a ConfigError or an unreadable file
            print(f"ksr rpc: {err}", file=sys.stderr)
            return 2
    else:
        spec = default_socket()
    try:
        request = build_request(args.method, list(args.params), random.randint(2, 10000))
    except ValueError as err:
        print(f"ksr rpc: bad parameter: {err}", file=sys.stderr)
        return 2
    try:
        reply = call(spec, request, args.timeout)
    except ConnectionError:
        print(
            f"ksr rpc: no ksr server is answering on {spec} (is it running with jsonrpcs loaded? "
            "see --socket / [modparam.jsonrpcs] dgram_socket)",
            file=sys.stderr,
        )
        return 2
    except TimeoutError as err:
        print(f"ksr rpc: {err} from {spec} within {args.timeout:g}s", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"ksr rpc: {spec}: {err}", file=sys.stderr)
        return 2
    if "error" in reply:
        print(json.dumps(reply["error"], indent=2, ensure_ascii=False), file=sys.stderr)
        return 1
    print(json.dumps(reply.get("result"), indent=2, ensure_ascii=False))
    return 0
