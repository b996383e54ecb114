"""A TCP relay to a real server that a test can open and shut: a network outage on demand."""

from __future__ import annotations

import trio


class TcpGate:
    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self._scope: trio.CancelScope | None = None

    async def _pipe(self, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await dst.aclose()

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(*self.target)
        except OSError:
            await client.aclose()
            return
        async with trio.open_nursery() as n:
            n.start_soon(self._pipe, client, upstream)
            n.start_soon(self._pipe, upstream, client)

    async def _serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            async with trio.open_nursery() as n:
                task_status.started()
                await trio.serve_listeners(self._handle, listeners, handler_nursery=n)

    async def open(self, nursery: trio.Nursery) -> None:
        await nursery.start(self._serve)

    def shut(self) -> None:
        """Stop listening and cut every relayed connection."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
