"""Where a running ksr puts its RPC socket by default.

``/run/ksr/ksr_rpc.sock`` when ``/run/ksr`` is a folder this process may write (systemd's
``RuntimeDirectory=ksr`` makes it for the service user; the container image has it), else
``/tmp/ksr_rpc.sock`` (a developer's checkout). ``$KSR_RPC_SOCKET`` overrides both, and
``[modparam.jsonrpcs] dgram_socket`` overrides everything. ``ksr rpc`` looks in the same
places: the /run one when it exists.
"""

from __future__ import annotations

import os

RUN_DIR = "/run/ksr"
RUN_SOCKET = f"{RUN_DIR}/ksr_rpc.sock"
FALLBACK_SOCKET = "/tmp/ksr_rpc.sock"


def server_rpc_socket() -> str:
    env = os.environ.get("KSR_RPC_SOCKET")
    if env:
        return env
    if os.path.isdir(RUN_DIR) and os.access(RUN_DIR, os.W_OK | os.X_OK):
        return RUN_SOCKET
    return FALLBACK_SOCKET


def client_rpc_socket() -> str:
    env = os.environ.get("KSR_RPC_SOCKET")
    if env:
        return env
    return RUN_SOCKET if os.path.exists(RUN_SOCKET) else FALLBACK_SOCKET
