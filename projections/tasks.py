"""The tasks read model: one row per task, for listing, stats and the workers' queue.

The task aggregate stays the authority: a worker that picks a task from here folds its
stream before running it, so a row lagging behind (a pause not projected yet) is harmless.
"""

from __future__ import annotations

from typing import ClassVar

import asyncpg

from bus.config.settings import Settings
from bus.store.pickup import TASKS_CHANGED
from domain import tasks
from domain.events import RecordedEvent, event_time
from domain.tasks.events import (
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskPaused,
    TaskProgressed,
    TaskResumed,
    TaskStarted,
)
from projections.base import Projection, as_uuid

# Finished tasks leave the read model after CAIRN_TASK_RETENTION seconds ($1): the task
# workers' sweep (task_queries.delete_expired), and the end of a rebuild, which would
# otherwise bring every one of them back from the log.
FORGET_FINISHED = (
    "DELETE FROM readmodel.tasks WHERE finished_at IS NOT NULL"
    " AND finished_at < now() - make_interval(secs => $1)"
)


class TasksProjection(Projection):
    name: ClassVar[str] = "tasks"
    aggregates: ClassVar[tuple[str, ...]] = (tasks.AGGREGATE.name,)
    tables: ClassVar[tuple[str, ...]] = ("readmodel.tasks",)
    announces: ClassVar[str | None] = TASKS_CHANGED  # the task workers claim from it

    async def after_rebuild(self, conn: asyncpg.Connection, settings: Settings) -> None:
        await conn.execute(FORGET_FINISHED, settings.task_retention)

    async def apply(self, conn: asyncpg.Connection, ev: RecordedEvent) -> None:
        at = event_time(ev)
        task_id = as_uuid(ev.aggregate_id)

        async def update(sets: str, *args: object) -> None:
            await conn.execute(
                f"UPDATE readmodel.tasks SET {sets}, updated_at = $2, last_version = $3"
                " WHERE id = $1",
                task_id,
                at,
                ev.version,
                *args,
            )

        match ev.payload:
            case TaskCreated() as e:
                await conn.execute(
                    """
                    INSERT INTO readmodel.tasks (
                        id, owner, type, status, priority, params, items_total, bytes_total,
                        created_at, updated_at, last_version)
                    VALUES ($1, $2, $3, 'PENDING', $4, $5::jsonb, $6, $7, $8, $8, $9)
                    ON CONFLICT (id) DO NOTHING
                    """,
                    task_id,
                    e.owner,
                    e.task_type,
                    e.priority,
                    dict(e.params),
                    e.items_total,
                    e.bytes_total,
                    at,
                    ev.version,
                )
            case TaskStarted() as e:
                await update(
                    "status = 'RUNNING', attempts = $4, started_at = coalesce(started_at, $2)",
                    e.attempt,
                )
            case TaskProgressed() as e:
                failed = sum(1 for r in e.results if r.get("error"))
                # items_failed counts failures before `first` plus this batch's (a batch
                # re-recorded after a takeover starts where the last one ended, see decide).
                await update(
                    "items_done = $4, items_failed = items_failed + $5,"
                    " bytes_done = greatest(bytes_done, $6),"
                    " items_total = coalesce($7, items_total),"
                    " bytes_total = coalesce($8, bytes_total)",
                    e.first + len(e.results),
                    failed,
                    e.bytes_done,
                    e.items_total,
                    e.bytes_total,
                )
            case TaskCompleted() as e:
                # As the aggregate does (domain/tasks/state.py): an extract's items_total is
                # 0 until its archive is listed (the checkpoint then records it), so
                # completion keeps items_done.
                await update(
                    "status = 'COMPLETED', finished_at = $2, result_file_ids = $4::jsonb,"
                    " bytes_done = greatest(bytes_done, $5),"
                    " items_done = greatest(items_done, items_total)",
                    list(e.result_file_ids),
                    e.bytes_done,
                )
            case TaskFailed() as e:
                await update(
                    "status = 'FAILED', finished_at = $2, error = $4::jsonb", dict(e.error)
                )
            case TaskPaused():
                await update("status = 'PAUSED'")
            case TaskResumed():
                await update("status = 'PENDING'")
            case TaskCancelled():
                await update("status = 'CANCELLED', finished_at = $2")
            case _:
                await update("status = status")
