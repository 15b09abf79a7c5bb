"""One task run by one worker: its lease, its control checks, its checkpoints.

Safe points. The executors call `check()` between items (and, for long items, every few
hundred milliseconds while streaming). It reads the task's new events from the event
store, the authority: a pause or cancel recorded by the API is seen there at the next
check, well within a second, and the run stops by raising `Stop`. A lease this worker no
longer holds (it ran out and another worker took the task over) stops it too.

Checkpoints. Item results are buffered and recorded as one RecordProgress command per
batch (every `BATCH` items or `FLUSH_EVERY` seconds, and when the run stops), so a task
of thousands of items is not thousands of events. An item done but not yet checkpointed
when the worker dies is simply done again by the next worker: its commands have
deterministic ids (domain/tasks/ids.py), so its effect happens once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bus.actors.commandbus import CommandBus, CommandResult
from bus.store.eventstore import PostgresEventStore
from domain.kernel import Command
from domain.registry import AGGREGATES
from domain.tasks import FINISHED, TaskState, TaskStatus
from domain.tasks.commands import RecordProgress
from handlers.destination import bucket_gone
from handlers.tasks import leases

BATCH = 50
FLUSH_EVERY = 0.5
CHECK_EVERY = 0.2
# How often a safe point asks again whether the destination bucket is still there (one
# read of the bucket's stream; a forced check, between files, always does): a bucket
# deleted mid-run, forced, stops the run within about this long instead of letting it
# write on into a name that is gone.
DESTINATION_EVERY = 1.0


class Stop(Exception):
    """The run must stop at this safe point: paused, cancelled, finished or lease lost."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TaskFailure(Exception):
    """The task cannot complete: it fails with this error (code, message, details)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message, "details": details or {}}


def destination_gone(bucket: str) -> TaskFailure:
    return TaskFailure("bucket_not_found", "the destination bucket is gone", {"bucket": bucket})


def utcnow() -> datetime:
    return datetime.now(UTC)


class TaskRun:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        store: PostgresEventStore,
        bus: CommandBus,
        worker: str,
        state: TaskState,
        version: int,
        lease_seconds: float,
        stopping: asyncio.Event,
    ) -> None:
        self.pool = pool
        self.store = store
        self.bus = bus
        self.worker = worker
        self.state = state
        self.version = version
        self.lease_seconds = lease_seconds
        self.stopping = stopping  # the worker process is shutting down
        self.lease_lost = False
        self.pending: list[dict[str, Any]] = []
        self.first_pending = state.items_done
        self.bytes_done = state.bytes_done
        self._last_flush = time.monotonic()
        self._last_check = 0.0
        # The bucket the run writes into, once checked (fileops.check_destination).
        self.destination: str | None = None
        self._destination_checked = 0.0

    @property
    def task_id(self) -> str:
        return self.state.id

    def command(self, cls: Callable[..., Command], **kw: Any) -> Command:
        return cls(aggregate_id=self.task_id, caller=self.state.owner, at=utcnow(), **kw)

    async def send(self, cmd: Command) -> CommandResult:
        return await self.bus.send(cmd, correlation_id=f"task-{self.task_id}")

    async def refresh(self) -> TaskState:
        """Fold the events recorded since the last look (the stream is the authority)."""
        stream = AGGREGATES["tasks"].stream_id(self.task_id)
        new = await self.store.read_stream(stream, from_version=self.version + 1)
        # Two stages of one run may look at once (extract stores ahead while it commits):
        # fold only what the other did not fold while this read was in flight.
        new = [e for e in new if e.version > self.version]
        if new:
            st: TaskState | None = AGGREGATES["tasks"].fold(new, self.state)
            assert st is not None
            self.state = st
            self.version = new[-1].version
        return self.state

    async def check(self, *, force: bool = False) -> None:
        """A safe point: raise Stop if the run must end here."""
        now = time.monotonic()
        if not force and now - self._last_check < CHECK_EVERY:
            return
        self._last_check = now
        if self.stopping.is_set():
            raise Stop("worker stopping")
        if self.lease_lost:
            raise Stop("lease lost")
        st = await self.refresh()
        if st.status == TaskStatus.PAUSED:
            raise Stop("paused")
        if st.status in FINISHED:
            raise Stop(st.status.value.lower())
        if self.destination is not None and (
            force or now - self._destination_checked >= DESTINATION_EVERY
        ):
            self._destination_checked = now
            if await bucket_gone(self.store, self.destination, st.owner):
                raise destination_gone(self.destination)

    async def item_done(self, result: dict[str, Any], nbytes: int = 0) -> None:
        self.pending.append(result)
        self.bytes_done += nbytes
        if len(self.pending) >= BATCH or time.monotonic() - self._last_flush >= FLUSH_EVERY:
            await self.flush()

    async def flush(self) -> None:
        """Record the buffered item results as one checkpoint."""
        self._last_flush = time.monotonic()
        if not self.pending:
            return
        first, results = self.first_pending, list(self.pending)
        await self.send(
            self.command(
                RecordProgress,
                first=first,
                results=results,
                bytes_done=self.bytes_done,
                command_id=f"task-{self.task_id}-progress-{first}-{len(results)}",
            )
        )
        self.first_pending += len(results)
        self.pending.clear()

    async def heartbeat(self) -> None:
        """Renew the lease until cancelled; note when it is lost (checked at safe points)."""
        every = max(self.lease_seconds / 3, 0.1)
        while True:
            await asyncio.sleep(every)  # a timer, not synchronisation: renew periodically
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                if not await leases.renew(self.pool, self.task_id, self.worker, self.lease_seconds):
                    self.lease_lost = True
                    return


Executor = Callable[[TaskRun], Awaitable[list[str]]]
"""Runs a task from its checkpoint; returns the result file ids. Raises Stop or TaskFailure."""
