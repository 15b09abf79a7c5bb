"""projections/pipelined.py against the real PostgreSQL: queued writes land in the order
they were issued, a run of identical statements is one round trip, reads see every
earlier write, and a failing write raises when it is sent."""

from __future__ import annotations

import asyncpg
import pytest

from projections.pipelined import PipelinedWrites

INSERT = "INSERT INTO t (v) VALUES ($1)"


async def _table(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "CREATE TEMP TABLE t (seq serial PRIMARY KEY, v int NOT NULL CHECK (v >= 0))"
    )


async def _values(conn: asyncpg.Connection) -> list[int]:
    return [r["v"] for r in await conn.fetch("SELECT v FROM t ORDER BY seq")]


async def test_a_run_of_identical_writes_is_one_round_trip_in_order(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _table(conn)
        writes = PipelinedWrites(conn)
        for v in range(50):
            assert await writes.execute(INSERT, v) == ""
        assert await _values(conn) == [], "nothing is sent before a flush"
        await writes.flush()
        assert writes.round_trips == 1
        assert await _values(conn) == list(range(50))


async def test_different_statements_keep_their_order(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _table(conn)
        writes = PipelinedWrites(conn)
        await writes.execute(INSERT, 1)
        await writes.execute(INSERT, 2)
        await writes.execute("UPDATE t SET v = v * $1", 10)  # only the rows before it
        await writes.execute(INSERT, 3)
        await writes.flush()
        assert writes.round_trips == 3
        assert await _values(conn) == [10, 20, 3]


async def test_a_read_sees_every_write_queued_before_it(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _table(conn)
        writes = PipelinedWrites(conn)
        await writes.execute(INSERT, 7)
        await writes.execute(INSERT, 8)
        assert await writes.fetchval("SELECT sum(v) FROM t WHERE v > $1", 0) == 15
        assert [r["v"] for r in await writes.fetch("SELECT v FROM t ORDER BY seq")] == [7, 8]
        row = await writes.fetchrow("SELECT max(v) AS m FROM t WHERE v < $1", 100)
        assert row is not None and row["m"] == 8


async def test_a_failing_write_raises_when_sent(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await _table(conn)
        writes = PipelinedWrites(conn)
        with pytest.raises(asyncpg.CheckViolationError):
            async with conn.transaction():
                await writes.execute(INSERT, 1)
                await writes.execute(INSERT, -1)  # queued: the CHECK has not run yet
                await writes.execute(INSERT, 2)
                await writes.flush()
        assert await _values(conn) == [], "the run is atomic with its transaction"
