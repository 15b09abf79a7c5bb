"""The inline tier's group commit (bus/blobs/inline_rows.py), on the real PostgreSQL.

Puts that arrive together share statements, each put returns only once its row is
committed, the same bytes twice in one batch are one row, a failed insert fails exactly
the puts of its batch, and a put whose caller is cancelled leaves the others alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from bus.blobs.inline_rows import MAX_ROWS, InlineRowWriter
from bus.store.db import create_pool


class CountingPool:
    """The real pool, counting the statements it runs; `fail` makes the next ones raise."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements = 0
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None  # when set, statements wait for it
        self.started = asyncio.Event()  # a statement began

    async def execute(self, query: str, *args: Any) -> str:
        self.statements += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        result: str = await self.pool.execute(query, *args)
        return result


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[CountingPool]:
    real = await create_pool(db_url, min_size=1, max_size=2)
    try:
        yield CountingPool(real)
    finally:
        await real.close()


def writer_on(pool: CountingPool) -> InlineRowWriter:
    async def get() -> Any:
        return pool

    return InlineRowWriter(get)


def row(data: bytes) -> tuple[str, int, bytes]:
    return hashlib.sha256(data).hexdigest(), len(data), data


async def db_now(pool: CountingPool) -> float:
    """The database's clock, which `stored_at` is on."""
    now: float = await pool.pool.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
    return now


async def stored(pool: CountingPool, digests: list[str]) -> dict[str, tuple[float, bytes]]:
    got = await pool.pool.fetch(
        "SELECT sha256, stored_at, data FROM blobs.inline WHERE sha256 = ANY($1::text[])",
        digests,
    )
    return {r["sha256"]: (r["stored_at"], r["data"]) for r in got}


async def test_puts_that_arrive_together_share_statements_and_all_commit(
    pool: CountingPool,
) -> None:
    writer = writer_on(pool)
    rows = [row(os.urandom(4096)) for _ in range(64)]
    # The first put finds nothing in flight and goes at once; its insert is held until the
    # other 63 have queued behind it, and those must then go together.
    pool.gate = asyncio.Event()
    puts = [asyncio.create_task(writer.put(*rows[0]))]
    await pool.started.wait()
    puts += [asyncio.create_task(writer.put(*r)) for r in rows[1:]]
    await asyncio.sleep(0)  # they run up to their wait
    assert not any(p.done() for p in puts)  # nothing returns before its row is committed
    pool.gate.set()
    await asyncio.gather(*puts)
    assert pool.statements == 2  # the first row alone, then the 63 queued behind it
    got = await stored(pool, [r[0] for r in rows])
    assert {d: data for d, (_, data) in got.items()} == {r[0]: r[2] for r in rows}


async def test_a_queue_longer_than_a_statement_takes_several(pool: CountingPool) -> None:
    writer = writer_on(pool)
    rows = [row(os.urandom(64)) for _ in range(2 * MAX_ROWS + 2)]
    pool.gate = asyncio.Event()
    puts = [asyncio.create_task(writer.put(*r)) for r in rows]
    await asyncio.sleep(0)
    pool.gate.set()
    await asyncio.gather(*puts)
    # All queued before the flush began: statements of at most MAX_ROWS.
    assert pool.statements == 3
    assert len(await stored(pool, [r[0] for r in rows])) == len(rows)


async def test_the_same_bytes_twice_in_one_batch_are_one_row_at_the_databases_time(
    pool: CountingPool,
) -> None:
    writer = writer_on(pool)
    first, same = row(b"a" * 100), row(b"b" * 50)
    before = await db_now(pool)
    pool.gate = asyncio.Event()
    puts = [asyncio.create_task(writer.put(*r)) for r in (first, same, same)]
    await asyncio.sleep(0)
    pool.gate.set()
    await asyncio.gather(*puts)  # ON CONFLICT touching one row twice would raise here
    got = await stored(pool, [first[0], same[0]])
    assert got[same[0]][1] == b"b" * 50
    # Stored at the database's time (the writer passes none): between before and after.
    after = await db_now(pool)
    assert all(before <= at <= after for at, _ in got.values()), (before, got, after)
    # A later put of stored bytes refreshes the time...
    await pool.pool.execute("UPDATE blobs.inline SET stored_at = stored_at - 7200")
    before = await db_now(pool)
    await writer.put(*same)
    assert (await stored(pool, [same[0]]))[same[0]][0] >= before
    # ...and never moves it back (a row stored by a writer whose clock ran ahead).
    await pool.pool.execute("UPDATE blobs.inline SET stored_at = $1", after + 3600)
    await writer.put(*same)
    assert (await stored(pool, [same[0]]))[same[0]][0] == after + 3600


async def test_a_failed_insert_fails_its_batch_and_the_next_put_works(
    pool: CountingPool,
) -> None:
    writer = writer_on(pool)
    pool.fail = RuntimeError("the database went away")
    rows = [row(os.urandom(32)) for _ in range(3)]
    results = await asyncio.gather(*[writer.put(*r) for r in rows], return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await stored(pool, [r[0] for r in rows]) == {}
    pool.fail = None
    again = row(os.urandom(32))
    await writer.put(*again)
    assert list(await stored(pool, [again[0]])) == [again[0]]


async def test_a_cancelled_put_neither_stops_the_batch_nor_its_own_row(
    pool: CountingPool,
) -> None:
    writer = writer_on(pool)
    pool.gate = asyncio.Event()
    rows = [row(os.urandom(32)) for _ in range(4)]
    puts = [asyncio.create_task(writer.put(*r)) for r in rows]
    await asyncio.sleep(0)
    puts[1].cancel()  # its client went away while the row was queued
    await asyncio.sleep(0)
    pool.gate.set()
    done = await asyncio.gather(*puts, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert [d for i, d in enumerate(done) if i != 1] == [None, None, None]
    # Its row went with its batch: unreferenced, it is the collector's like any other.
    assert len(await stored(pool, [r[0] for r in rows])) == 4
