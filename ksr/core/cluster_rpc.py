"""RPC commands answered for all worker processes (``ksr run -n N``).

A command declared with a merge policy (``@rpc("dlg.list", merge=JOIN)``, ksr/core/rpc_merge.py)
is asked of every other worker over the hand-off sockets (3 s timeout; a worker that is down is
left out) and the answers are merged by that policy. Any worker can do this (worker 0 serves the
jsonrpcs socket; HTTP JSON-RPC reaches any worker); a request coming from another worker is
answered locally."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .rpc import RpcCommand, RpcError, RpcRegistry
from .rpc_merge import EVERY, FIRST, merge

Ask = Callable[[int, str, list[Any]], Awaitable[dict[str, Any] | None]]


def install(registry: RpcRegistry, index: int, count: int, ask: Ask) -> None:
    """Give every command with a merge policy its all-workers form. ``ask(worker, method,
    params)`` runs a command on another worker: its JSON-RPC reply, or None (down, timeout)."""
    for cmd in registry.commands.values():
        if cmd.merge and cmd.cluster is None:
            cmd.cluster = _clustered(cmd, [i for i in range(count) if i != index], ask)


def _clustered(cmd: RpcCommand, others: list[int], ask: Ask) -> Callable[..., Any]:
    async def clustered(*args: Any) -> Any:
        if cmd.merge == FIRST:  # e.g. end one dialog: stop at the first worker that has it
            try:
                return await _run(cmd.fn, args)
            except RpcError as err:
                for i in others:
                    reply = await ask(i, cmd.name, list(args))
                    if reply is not None and "result" in reply:
                        return reply["result"]
                raise err
        result = await _run(cmd.fn, args)  # refused here: the others are not asked
        replies: list[dict[str, Any] | None] = [None] * len(others)

        async def one(k: int, i: int) -> None:
            replies[k] = await ask(i, cmd.name, list(args))

        async with trio.open_nursery() as nursery:
            for k, i in enumerate(others):
                nursery.start_soon(one, k, i)
        if cmd.merge == EVERY:
            # a worker that is down (being restarted) is left out: it starts with the new state
            refused = [
                f"worker {i}: {reply['error'].get('message', reply['error'])}"
                for i, reply in zip(others, replies, strict=True)
                if reply is not None and "error" in reply
            ]
            if refused:
                raise RpcError(500, "; ".join(refused))
            return result
        for reply in replies:
            if reply is not None and "result" in reply:
                result = merge(result, reply["result"])
        return result

    return clustered


async def _run(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
