"""apply_event without Kafka: the checkpoint logic on its own, against real Postgres."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import cast

import asyncpg
import pytest

from bus.store.eventstore import PostgresEventStore
from domain.events import RecordedEvent
from projections.base import Checkpoints, GapNotFillable, apply_checkpointed, apply_event
from projections.uploads import UploadsProjection
from tests.projections.conftest import CountingConnection, Writer


async def test_in_order_duplicate_and_gap(
    pool: asyncpg.Pool, writer: Writer, event_store: PostgresEventStore
) -> None:
    p = UploadsProjection()
    uid, _, events = await writer.upload("alice", "a.bin", 500, complete=False)
    assert [e.version for e in events] == [1, 2, 3, 4, 5, 6]
    async with pool.acquire() as conn, conn.transaction():
        assert await apply_event(conn, p, events[0], event_store) == 1
        assert await apply_event(conn, p, events[0], event_store) == 0  # duplicate
        assert await apply_event(conn, p, events[3], event_store) == 3  # fills 2 and 3
        assert await apply_event(conn, p, events[1], event_store) == 0  # late, already filled
        assert await apply_event(conn, p, events[4], event_store) == 1
    row = await pool.fetchrow("SELECT * FROM readmodel.uploads WHERE id = $1", uuid.UUID(uid))
    assert (row["chunks_received"], row["bytes_received"], row["last_version"]) == (4, 400, 5)
    assert (
        await pool.fetchval(
            "SELECT version FROM readmodel.applied WHERE projection = 'uploads' AND stream_id = $1",
            f"upload-{uid}",
        )
        == 5
    )


async def test_effect_and_checkpoint_roll_back_together(
    pool: asyncpg.Pool, writer: Writer, event_store: PostgresEventStore
) -> None:
    p = UploadsProjection()
    uid, _, events = await writer.upload("alice", "a.bin", 100, complete=False)
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            assert await apply_event(conn, p, events[0], event_store) == 1
            raise RuntimeError("crash before commit")
    assert await pool.fetchval("SELECT count(*) FROM readmodel.uploads") == 0
    assert await pool.fetchval("SELECT count(*) FROM readmodel.applied") == 0
    # Redelivered after the crash: applied then, exactly once.
    async with pool.acquire() as conn, conn.transaction():
        assert await apply_event(conn, p, events[0], event_store) == 1
        assert await apply_event(conn, p, events[1], event_store) == 1
    row = await pool.fetchrow("SELECT * FROM readmodel.uploads WHERE id = $1", uuid.UUID(uid))
    assert row["bytes_received"] == 100


async def test_gap_the_event_store_cannot_fill_is_an_error(
    pool: asyncpg.Pool, writer: Writer, event_store: PostgresEventStore
) -> None:
    _, _, events = await writer.upload("alice", "a.bin", 300, complete=False)
    stranger = replace(events[2], stream_id=f"upload-{uuid.uuid4()}")
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(GapNotFillable):
            await apply_event(conn, UploadsProjection(), stranger, event_store)


async def test_a_batch_locks_and_saves_its_checkpoints_once(
    pool: asyncpg.Pool, writer: Writer, event_store: PostgresEventStore
) -> None:
    p = UploadsProjection()
    a, _, first = await writer.upload("alice", "a.bin", 300, complete=False)
    b, _, second = await writer.upload("bob", "b.bin", 200, complete=False)
    # Interleaved, with a duplicate and a gap (b's version 2 never delivered).
    batch = [first[0], second[0], first[1], first[1], second[2], first[2]]
    async with pool.acquire() as raw, raw.transaction():
        conn = CountingConnection(raw)
        seen = await Checkpoints.lock(conn, p.name, [e.stream_id for e in batch])
        locking = conn.statements
        applied = [
            await apply_checkpointed(cast(asyncpg.Connection, conn), p, e, event_store, seen)
            for e in batch
        ]
        effects = conn.statements - locking
        await seen.save(conn)
        assert conn.statements - locking - effects == 1
    assert locking == 1
    assert applied == [1, 1, 1, 0, 2, 1]
    # Every statement after the lock was an effect of an applied event (the uploads
    # projection writes each event with one or two statements): no checkpoint round trips.
    assert effects <= 2 * sum(applied)
    versions = dict(
        await pool.fetch(
            "SELECT stream_id, version FROM readmodel.applied WHERE projection = 'uploads'"
        )
    )
    assert versions == {f"upload-{a}": 3, f"upload-{b}": 3}
    rows = {
        str(r["id"]): r["bytes_received"]
        for r in await pool.fetch("SELECT id, bytes_received FROM readmodel.uploads")
    }
    assert rows == {a: 200, b: 200}


async def test_an_effect_rolled_back_in_a_savepoint_leaves_its_checkpoint(
    pool: asyncpg.Pool, writer: Writer, event_store: PostgresEventStore
) -> None:
    class Failing(UploadsProjection):
        async def apply(self, conn: asyncpg.Connection, ev: RecordedEvent) -> None:
            if ev.version == 2:
                raise ValueError("cannot apply")
            await super().apply(conn, ev)

    p = Failing()
    uid, _, events = await writer.upload("alice", "a.bin", 300, complete=False)
    async with pool.acquire() as conn, conn.transaction():
        seen = await Checkpoints.lock(conn, p.name, [events[0].stream_id])
        assert await apply_checkpointed(conn, p, events[0], event_store, seen) == 1
        with pytest.raises(ValueError):
            async with conn.transaction():
                await apply_checkpointed(conn, p, events[1], event_store, seen)
        assert seen.version(events[0].stream_id) == 1
        await seen.save(conn)
    assert (
        await pool.fetchval(
            "SELECT version FROM readmodel.applied WHERE projection = 'uploads' AND stream_id = $1",
            f"upload-{uid}",
        )
        == 1
    )
