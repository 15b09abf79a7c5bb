"""apply_event without Kafka: the checkpoint logic on its own, against real Postgres."""

from __future__ import annotations

import uuid
from dataclasses import replace

import asyncpg
import pytest

from bus.store.eventstore import PostgresEventStore
from projections.base import GapNotFillable, apply_event
from projections.uploads import UploadsProjection
from tests.projections.conftest import Writer


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
