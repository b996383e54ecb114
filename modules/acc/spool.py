"""The record queue between the call and the backend: records are never dropped.

``submit`` only appends to memory (it never blocks a call). A writer task drains the queue in
batches through a worker thread. When the backend fails, the records stay queued, the failure is
logged once, and the writer retries with a growing pause. If the backend stays down longer than
``spool_after`` seconds (or the queue grows past ``max_memory`` records) the queue is appended to
a local spool file (JSON lines, fsync'ed), which is replayed first when the backend is back.
At shutdown whatever is still in memory goes to the spool file, and the next start replays it.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from pathlib import Path
from typing import Any

import trio

from .writers import Batch, Writer, append_lines

log = logging.getLogger("ksr.acc")

BATCH = 200


class DurableQueue:
    def __init__(
        self, writer: Writer, spool_path: Path, spool_after: float = 10.0, max_memory: int = 10000
    ) -> None:
        self.writer = writer
        self.spool_path = spool_path
        self.spool_after = spool_after
        self.max_memory = max_memory
        self.queue: deque[tuple[str, dict[str, Any]]] = deque()
        self.written = 0
        self.down_since: float | None = None
        self._wake = trio.Event()

    # -- producers ---------------------------------------------------------------------------
    def submit(self, table: str, rec: dict[str, Any]) -> None:
        self.queue.append((table, rec))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self.queue) + self.spooled_count()

    def spooled_count(self) -> int:
        try:
            with open(self.spool_path, "rb") as f:
                return sum(1 for line in f if line.strip())
        except OSError:
            return 0

    async def wait_idle(self) -> None:
        """Until everything submitted so far is written (tests, tools)."""
        while self.queue or self.spooled_count():
            self._wake.set()
            await trio.sleep(0.05)

    # -- the writer task ---------------------------------------------------------------------
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        pause = 0.5
        while True:
            if not self.queue and not self.spooled_count():
                self._wake = trio.Event()
                await self._wake.wait()
            ok = await self._drain_once()
            if ok:
                pause = 0.5
                continue
            if self._should_spool():
                self.spool_memory()
            with trio.move_on_after(pause):
                await trio.sleep_forever()  # a retry is due; submissions just queue meanwhile
            pause = min(pause * 2, 30.0)

    async def _drain_once(self) -> bool:
        """Write the spool file (first) or a batch from memory. False if the backend failed."""
        spooled = self._read_spool()
        if spooled:
            if not await self._write(spooled):
                return False
            try:
                os.unlink(self.spool_path)
            except OSError:
                pass
            log.warning(
                "acc: %d spooled records written to %s", len(spooled), self.writer.describe()
            )
            return True
        batch = [self.queue[i] for i in range(min(BATCH, len(self.queue)))]
        if not batch:
            return True
        if not await self._write(batch):
            return False
        for _ in batch:
            self.queue.popleft()
        return True

    async def _write(self, batch: Batch) -> bool:
        try:
            await trio.to_thread.run_sync(self.writer.write, batch)
        except Exception as err:
            if self.down_since is None:
                self.down_since = trio.current_time()
                log.error(
                    "acc: cannot write records to %s (%s); %d queued, kept until it is back",
                    self.writer.describe(),
                    err,
                    len(self.queue),
                )
            return False
        if self.down_since is not None:
            log.warning("acc: %s is back; writing the queued records", self.writer.describe())
            self.down_since = None
        self.written += len(batch)
        return True

    def _should_spool(self) -> bool:
        if not self.queue:
            return False
        if len(self.queue) >= self.max_memory:
            return True
        return (
            self.down_since is not None
            and trio.current_time() - self.down_since >= self.spool_after
        )

    # -- the spool file ----------------------------------------------------------------------
    def spool_memory(self) -> int:
        """Append the in-memory queue to the spool file (synchronous: also used at shutdown)."""
        if not self.queue:
            return 0
        items = list(self.queue)
        append_lines(
            self.spool_path,
            [json.dumps({"t": t, "r": r}, separators=(",", ":")) for t, r in items],
        )
        self.queue.clear()
        log.warning(
            "acc: %d records spooled to %s until %s is back",
            len(items),
            self.spool_path,
            self.writer.describe(),
        )
        return len(items)

    def _read_spool(self) -> Batch:
        try:
            text = self.spool_path.read_text("utf-8", "surrogateescape")
        except OSError:
            return []
        out: Batch = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                out.append((str(obj["t"]), dict(obj["r"])))
            except (ValueError, KeyError, TypeError):
                log.error("acc: unreadable line in %s skipped: %.80s", self.spool_path, line)
        return out
