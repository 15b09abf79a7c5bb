"""The task worker process (`cairn run tasks`): claims tasks and runs them.

Each worker runs up to CAIRN_TASK_CONCURRENCY tasks at once. An idle slot claims the
highest-priority runnable task (then the oldest) whose owner has fewer than
CAIRN_TASK_CONCURRENCY_PER_OWNER tasks running anywhere (handlers/tasks/leases.py), so
one user's batch cannot starve everyone else. Scale by running more workers: the lease
table coordinates them, and a worker that dies leaves leases that run out after
CAIRN_TASK_LEASE_SECONDS, when another worker takes its tasks over from their last
checkpoint. A new task is claimed at once: the worker LISTENs for the projector's changes
to readmodel.tasks and looks when one arrives, polling every CAIRN_TASK_POLL_INTERVAL
otherwise (bus/store/pickup.py). The same loop deletes finished tasks older than
CAIRN_TASK_RETENTION.

A task whose stream (or a command's target stream) holds an event of a newer schema
version than this code reads (a rolling upgrade, or a rollback: `upgrade_in_progress`)
stops where it is, as at a pause (its checkpoint kept, nothing failed or discarded), and
is not claimed again by this worker for 1 s, then 2, 4... up to 30 s (handlers/held.py),
until a worker of the new version takes it; logged once per event type and version,
counted in `cairn_handler_events_held{worker="tasks"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid

import asyncpg

from bus.actors.commandbus import BusUnavailable, CommandBus
from bus.actors.wake import Nudger
from bus.blobs.errors import BlobStoreUnavailable
from bus.blobs.factory import open_blob_store
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.store.eventstore import PostgresEventStore
from bus.store.pickup import TASKS_CHANGED, Pickup
from domain.commands import DeleteFile
from domain.errors import DomainError
from domain.registry import AGGREGATES
from domain.tasks import RUNNABLE, TaskState
from domain.tasks.commands import CompleteTask, FailTask, StartTask
from handlers.held import Holds, upgrade_in_progress
from handlers.tasks import leases
from handlers.tasks.compress import run_compress
from handlers.tasks.extract import run_extract
from handlers.tasks.fileops import run_file_items
from handlers.tasks.run import Stop, TaskFailure, TaskRun, utcnow
from projections import task_queries

log = get_logger(__name__)

RETENTION_EVERY = 60.0
# A task found not runnable (its read-model row lags a pause or cancel) is not claimed
# again for this long, so a worker does not spin on it until the projection catches up.
SKIP_FOR = 1.0


class TaskWorker:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.store = PostgresEventStore(pool)
        self.blobs = open_blob_store(settings.blobs_url, settings)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.running: dict[str, asyncio.Task[None]] = {}
        self.skip: dict[str, float] = {}
        # Tasks waiting for a newer version of Cairn (kept in `skip` until due).
        self.holds = Holds("tasks")
        self.stopping = asyncio.Event()
        self.bus: CommandBus | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self.bus = CommandBus(self.settings, nudge=Nudger(self.pool), pool=self.pool)
        await self.bus.start()
        # Woken whenever the projector changed readmodel.tasks (a new task, a task that
        # finished) and polling every CAIRN_TASK_POLL_INTERVAL as the safety net
        # (bus/store/pickup.py).
        pickup = Pickup(
            self.settings.database_url or "", self.settings.task_poll_interval, TASKS_CHANGED
        )
        pickup.start()
        last_retention = 0.0
        try:
            while not stop.is_set():
                for tid in [t for t, job in self.running.items() if job.done()]:
                    del self.running[tid]
                now = time.monotonic()
                self.skip = {t: until for t, until in self.skip.items() if until > now}
                self.holds.prune()
                claimed = None
                if len(self.running) < max(1, self.settings.task_concurrency):
                    try:
                        claimed = await leases.claim(
                            self.pool,
                            self.worker_id,
                            self.settings.task_lease_seconds,
                            self.settings.task_concurrency_per_owner,
                            [*self.skip, *self.running],
                        )
                    except (OSError, asyncpg.PostgresError) as e:
                        log.warning("claiming a task failed; will retry", error=str(e))
                if claimed is not None:
                    job = asyncio.create_task(
                        self._run(claimed.task_id), name=f"task-{claimed.task_id}"
                    )
                    # A slot comes free: look for the next task at once.
                    job.add_done_callback(lambda _t: pickup.nudge())
                    self.running[claimed.task_id] = job
                    continue  # another slot may be free: claim again at once
                if now - last_retention > RETENTION_EVERY:
                    last_retention = now
                    with contextlib.suppress(OSError, asyncpg.PostgresError):
                        await task_queries.delete_expired(self.pool, self.settings.task_retention)
                # Idle, or every slot busy: look again when work may have come.
                await pickup.wait(stop)
        finally:
            await pickup.stop()
            # Running tasks stop at their next safe point, checkpoint and give their
            # leases back, so another worker can take them over at once.
            self.stopping.set()
            if self.running:
                await asyncio.gather(*self.running.values(), return_exceptions=True)
            await self.bus.stop()
            await self.blobs.close()

    async def _load(self, task_id: str) -> tuple[TaskState | None, int]:
        events = await self.store.read_stream(AGGREGATES["tasks"].stream_id(task_id))
        st: TaskState | None = AGGREGATES["tasks"].fold(events)
        return st, (events[-1].version if events else 0)

    async def _run(self, task_id: str) -> None:
        assert self.bus is not None
        attempt = self.holds.attempt(task_id, "task")
        try:
            st, version = await self._load(task_id)
            if st is None or st.status not in RUNNABLE:
                self.skip[task_id] = time.monotonic() + SKIP_FOR
                return
            run = TaskRun(
                pool=self.pool,
                store=self.store,
                bus=self.bus,
                worker=self.worker_id,
                state=st,
                version=version,
                lease_seconds=self.settings.task_lease_seconds,
                stopping=self.stopping,
            )
            await run.send(run.command(StartTask, worker=self.worker_id))
            await run.refresh()
            beat = asyncio.create_task(run.heartbeat())
            try:
                await self._execute(run)
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
        except (BusUnavailable, BlobStoreUnavailable, OSError, asyncpg.PostgresError) as e:
            # Transient: give the lease back; the task is claimed again (by anyone).
            log.warning("task run interrupted; will retry", task=task_id, error=str(e))
            self.skip[task_id] = time.monotonic() + SKIP_FOR
        except DomainError as e:
            if upgrade_in_progress(e):
                delay = attempt.hold(e)
                self.skip[task_id] = time.monotonic() + delay
            else:
                log.info("task not started", task=task_id, code=e.code)
                self.skip[task_id] = time.monotonic() + SKIP_FOR
        except Exception:
            log.exception("task run crashed", task=task_id)
            self.skip[task_id] = time.monotonic() + SKIP_FOR
        finally:
            attempt.end()
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await leases.release(self.pool, task_id, self.worker_id)

    async def _execute(self, run: TaskRun) -> None:
        try:
            result_ids = await self._dispatch(run)
        except Stop as s:
            with contextlib.suppress(DomainError):
                await run.flush()  # keep what was done (a pause resumes from here)
            log.info("task stopped", task=run.task_id, reason=s.reason)
            return
        except TaskFailure as f:
            with contextlib.suppress(DomainError):
                await run.flush()
            await run.send(run.command(FailTask, error=f.error))
            return
        except (BusUnavailable, BlobStoreUnavailable, OSError, asyncpg.PostgresError):
            # Transient: the task is claimed again and continues (the blob store down, as
            # the event handlers already took it, was a FAILED internal_error for good).
            raise
        except Exception as e:
            if upgrade_in_progress(e):
                # A stream this code cannot read yet (a newer version wrote it): not a
                # failure of the task; it waits for that version (see _run).
                with contextlib.suppress(DomainError):
                    await run.flush()
                raise
            # A bug or data this code cannot handle: retrying would fail the same way.
            log.exception("task failed unexpectedly", task=run.task_id)
            error = {"code": "internal_error", "message": type(e).__name__, "details": {}}
            await run.send(run.command(FailTask, error=error))
            return
        try:
            await run.send(
                run.command(
                    CompleteTask,
                    result_file_ids=result_ids,
                    bytes_done=run.bytes_done,
                    command_id=f"task-{run.task_id}-complete",
                )
            )
        except DomainError as e:
            if upgrade_in_progress(e):
                raise  # the result stays: the completion is sent again (see _run)
            # Cancelled (or failed) while the last step ran: the result is not wanted.
            log.info("task finished otherwise", task=run.task_id, code=e.code)
            await self._discard(run, result_ids)

    async def _dispatch(self, run: TaskRun) -> list[str]:
        kind = run.state.task_type
        if kind in ("copy", "move", "delete"):
            return await run_file_items(run, self.settings)
        if kind == "compress":
            return await run_compress(run, self.settings, self.blobs)
        if kind == "extract":
            return await run_extract(run, self.settings, self.blobs)
        raise TaskFailure("unsupported_task_type", f"this worker cannot run {kind} tasks")

    async def _discard(self, run: TaskRun, result_ids: list[str]) -> None:
        """Delete result files of a task that was cancelled as it finished."""
        for fid in result_ids:
            with contextlib.suppress(DomainError):
                await run.send(
                    DeleteFile(
                        aggregate_id=fid,
                        caller=run.state.owner,
                        at=utcnow(),
                        command_id=f"task-{run.task_id}-discard-{fid}",
                    )
                )
