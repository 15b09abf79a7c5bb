"""projections/base.py usage deltas: summed over a transaction inside `deferred_usage`,
written once at its end; written at once everywhere else."""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg
import pytest

from projections.base import bump_usage, deferred_usage
from tests.projections.conftest import CountingConnection

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
