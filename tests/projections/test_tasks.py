"""The tasks read model agrees with the task aggregate: what GET /v1/tasks/{id} shows (the
folded stream) is what the listing, GET /v1/tasks/stats and an analyst's SQL read."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import asyncpg
import pytest

from bus.config.settings import Settings
from domain import tasks
from domain.tasks.commands import CompleteTask, CreateTask, RecordProgress, StartTask
from projections import task_queries
from projections.rebuild import rebuild
from tests.projections.conftest import T0, Writer

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_completed_extract_keeps_the_members_it_counted(
    pool: asyncpg.Pool, writer: Writer
) -> None:
    # An extract does not know its member count up front (items_total 0); its
    # checkpoints count the members. Completion must not reset items_done to items_total.
    tid = str(uuid.uuid4())

    def at(s: int) -> datetime:
        return T0 + timedelta(seconds=s)

    await writer.run(
        CreateTask(
            aggregate_id=tid, caller="alice", at=at(0), owner="alice", task_type="extract",
            params={"file": str(uuid.uuid4())}, items_total=0, bytes_total=30,
        )
    )  # fmt: skip
    await writer.run(StartTask(aggregate_id=tid, caller="alice", at=at(1), worker="w"))
    members = [{"index": i, "key": f"m{i}", "result": str(uuid.uuid4())} for i in range(3)]
    await writer.run(
        RecordProgress(
            aggregate_id=tid, caller="alice", at=at(2), first=0, results=members, bytes_done=30
        )
    )
    events = await writer.run(CompleteTask(aggregate_id=tid, caller="alice", at=at(3)))
    assert await rebuild(pool, "tasks") == 4

    state = tasks.AGGREGATE.fold(await writer.store.read_stream(events[-1].stream_id))
    assert state.items_done == 3
    row = await pool.fetchrow(
        "SELECT status, items_done, items_total FROM readmodel.tasks WHERE id = $1",
        uuid.UUID(tid),
    )
    assert row is not None
    assert (row["status"], row["items_done"], row["items_total"]) == ("COMPLETED", 3, 0)
    listed, _ = await task_queries.list_tasks(pool, "alice")
    assert listed[0]["progress"]["items_done"] == state.items_done
    assert (await task_queries.task_stats(pool, "alice"))["items_processed"] == 3


async def test_completion_counts_every_item_of_a_task_that_knew_its_count(
    pool: asyncpg.Pool, writer: Writer
) -> None:
    # A copy completes with items_total items done even if its last checkpoint was
    # not projected (the aggregate says the same).
    tid = str(uuid.uuid4())
    await writer.run(
        CreateTask(
            aggregate_id=tid, caller="bob", at=T0, owner="bob", task_type="copy",
            params={"files": []}, items_total=2,
        )
    )  # fmt: skip
    await writer.run(StartTask(aggregate_id=tid, caller="bob", at=T0, worker="w"))
    await writer.run(CompleteTask(aggregate_id=tid, caller="bob", at=T0))
    await rebuild(pool, "tasks")
    assert (
        await pool.fetchval("SELECT items_done FROM readmodel.tasks WHERE id = $1", uuid.UUID(tid))
        == 2
    )


async def test_a_rebuild_does_not_bring_back_tasks_past_their_retention(
    pool: asyncpg.Pool, writer: Writer, settings: Settings
) -> None:
    # Finished tasks leave the read model after CAIRN_TASK_RETENTION (the task workers'
    # sweep); their events stay. A rebuild replayed them all back into the listing and
    # the stats, until the next sweep.
    week = 7 * 24 * 3600.0
    old, recent = str(uuid.uuid4()), str(uuid.uuid4())
    for tid, at in ((old, T0 - timedelta(days=8)), (recent, T0)):
        await writer.run(
            CreateTask(
                aggregate_id=tid, caller="gina", at=at, owner="gina", task_type="copy",
                params={"files": []}, items_total=1,
            )
        )  # fmt: skip
        await writer.run(StartTask(aggregate_id=tid, caller="gina", at=at, worker="w"))
        await writer.run(CompleteTask(aggregate_id=tid, caller="gina", at=at))
    await rebuild(pool, "tasks")
    assert await task_queries.delete_expired(pool, week) == 1
    listed, total = await task_queries.list_tasks(pool, "gina")
    assert total == 1 and listed[0]["id"] == recent

    await rebuild(pool, "tasks", replace(settings, task_retention=week))
    listed, total = await task_queries.list_tasks(pool, "gina")
    assert total == 1 and listed[0]["id"] == recent
    assert (await task_queries.task_stats(pool, "gina"))["total"] == 1
