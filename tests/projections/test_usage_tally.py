"""projections/base.py usage deltas: summed over a transaction inside `deferred_usage`,
written once at its end; written at once everywhere else; or counted by the very
statement that finds the owner (`counting_usage`)."""

from __future__ import annotations

from datetime import date
from typing import Any, cast

import asyncpg
import pytest

from projections.base import bump_usage, counting_usage, deferred_usage
from projections.pipelined import PipelinedWrites, pipelined
from projections.uploads import UploadsProjection
from tests.projections.conftest import T0, CountingConnection, Writer

DAY = date(2026, 12, 3)


async def _usage(pool: asyncpg.Pool) -> dict[tuple[str, date], tuple[int, ...]]:
    rows = await pool.fetch(
        "SELECT owner, day, uploads_started, uploads_completed, bytes_uploaded,"
        " files_created, files_deleted FROM readmodel.usage_daily"
    )
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


async def test_deferred_bumps_are_summed_and_written_once_at_the_end(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO readmodel.usage_daily (owner, day, bytes_uploaded) VALUES ('alice', $1, 7)",
        DAY,
    )
    async with pool.acquire() as raw, raw.transaction():
        conn: Any = CountingConnection(raw)
        async with deferred_usage(conn):
            await bump_usage(conn, "alice", DAY, uploads_started=1)
            await bump_usage(conn, "alice", DAY, bytes_uploaded=100)
            await bump_usage(conn, "bob", DAY, files_created=1)
            await bump_usage(conn, "alice", DAY, bytes_uploaded=50, uploads_completed=1)
            await bump_usage(conn, "alice", date(2026, 12, 4), files_deleted=1)
            assert conn.statements == 0
        assert conn.statements == 1
    assert await _usage(pool) == {
        ("alice", DAY): (1, 1, 157, 0, 0),
        ("bob", DAY): (0, 0, 0, 1, 0),
        ("alice", date(2026, 12, 4)): (0, 0, 0, 0, 1),
    }


async def test_outside_the_block_or_on_another_connection_a_bump_is_written_at_once(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as raw, pool.acquire() as other_raw:
        conn: Any = CountingConnection(raw)
        other: Any = CountingConnection(other_raw)
        await bump_usage(conn, "alice", DAY, uploads_started=1)
        assert conn.statements == 1
        async with deferred_usage(conn):
            await bump_usage(other, "bob", DAY, uploads_started=1)
            assert other.statements == 1
        assert conn.statements == 1  # nothing deferred: nothing written
    assert await _usage(pool) == {
        ("alice", DAY): (1, 0, 0, 0, 0),
        ("bob", DAY): (1, 0, 0, 0, 0),
    }


async def test_a_block_that_raises_writes_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as raw:
        conn: Any = CountingConnection(raw)
        with pytest.raises(RuntimeError):
            async with deferred_usage(conn):
                await bump_usage(conn, "alice", DAY, uploads_started=1)
                raise RuntimeError("the batch failed")
        assert conn.statements == 0
        # And the tally is gone: the next bump is written at once.
        await bump_usage(conn, "alice", DAY, uploads_started=1)
        assert conn.statements == 1
    assert await _usage(pool) == {("alice", DAY): (1, 0, 0, 0, 0)}


async def test_unknown_columns_are_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(ValueError):
            await bump_usage(conn, "alice", DAY, nothing=1)
        async with deferred_usage(conn):
            with pytest.raises(ValueError):
                await bump_usage(conn, "alice", DAY, nothing=1)


async def test_counting_usage_adds_only_where_its_update_found_a_row(pool: asyncpg.Pool) -> None:
    update = "UPDATE things SET owner = owner WHERE id = $1 RETURNING owner"
    async with pool.acquire() as conn, conn.transaction():
        # Dropped at commit: the pooled connection goes back without it.
        await conn.execute(
            "CREATE TEMP TABLE things (id int PRIMARY KEY, owner text) ON COMMIT DROP"
        )
        await conn.execute("INSERT INTO things VALUES (1, 'carol')")
        sql = counting_usage(update, "bytes_uploaded", day=2, delta=3)
        await conn.execute(sql, 1, DAY, 40)
        await conn.execute(sql, 1, DAY, 2)
        await conn.execute(sql, 2, DAY, 1000)  # no such row: nothing counted
    assert await _usage(pool) == {("carol", DAY): (0, 0, 42, 0, 0)}
    with pytest.raises(ValueError):
        counting_usage(update, "nothing", day=2, delta=3)


async def test_an_uploads_byte_and_completion_events_cost_no_round_trip_each(
    pool: asyncpg.Pool, writer: Writer
) -> None:
    """Through the projector's pipelined writes, a batch of uploads' events (initiated,
    chunks stored, completed) is sent in a few runs, not one round trip per event, and
    the usage they count is exact."""
    events = []
    for k in range(5):
        _, _, evs = await writer.upload("dave", f"f{k}", 450, chunk_size=100, at=T0)
        events += [e for e in evs if e.stream_id.startswith("upload-")]
    assert len(events) == 5 * (1 + 5 + 1)
    projection = UploadsProjection()
    async with pool.acquire() as conn, conn.transaction():
        async with pipelined(conn) as via, deferred_usage(via):
            for ev in events:
                await projection.apply(via, ev)
        trips = cast(PipelinedWrites, via).round_trips
    # Runs of identical statements: at most one per change of event type, and far fewer
    # than the 35 events (it was one per chunk and per completion, reading the owner).
    assert trips <= 3 * 5 + 1, trips
    day = T0.date()
    assert (await _usage(pool))[("dave", day)] == (5, 5, 5 * 450, 0, 0)
