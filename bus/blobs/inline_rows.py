"""Group commit for the inline tier's rows: the puts that arrive together share one INSERT.

Every small blob is one row of `blobs.inline` (bus/blobs/inline.py), committed before its
put returns. One statement and one transaction per row made each 4 KiB object PUT pay a
round trip to PostgreSQL, a commit and its share of a WAL flush, and under 32 concurrent
clients those inserts were the API's largest single cost (issue 13). Here the puts go
through `bus.aio.GroupFlush`: the first put that finds no insert in flight writes its row
at once (nothing waits on a quiet server), and the puts that arrive while an insert is in
flight go together, in one multi-row INSERT, as soon as it is done. So a row waits at most
for one insert before its own starts.

A put whose request is cancelled (its client went away) neither stops the others' rows
nor leaves its own half written: its row is committed or not with its batch, and an
unreferenced row is the collector's, after its grace, like any other stored blob nobody
refers to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from bus.aio import GroupFlush

# Rows of one statement at most: bounds the statement's parameters and one transaction's
# size (64 KiB rows by default: 16 MiB), whatever the queue holds.
MAX_ROWS = 256

# `stored_at` is the database's clock, not the writer's: the collector (another host,
# another clock) judges a row's age on it (bus/blobs/inline.py), so a writer whose clock
# runs behind cannot make the blob it just put look older than the grace.
_PUT_MANY = """
INSERT INTO blobs.inline AS b (sha256, size, stored_at, data)
SELECT sha256, size, extract(epoch FROM clock_timestamp()), data
FROM unnest($1::text[], $2::integer[], $3::bytea[]) AS r (sha256, size, data)
ON CONFLICT (sha256) DO UPDATE SET stored_at = GREATEST(b.stored_at, EXCLUDED.stored_at)
"""

_Row = tuple[str, int, bytes]


class InlineRowWriter:
    """Writes rows of blobs.inline, many per statement when they arrive together."""

    def __init__(self, pool: Callable[[], Awaitable[asyncpg.Pool]]) -> None:
        self._pool = pool
        self._rows: GroupFlush[_Row, None] = GroupFlush(self._insert, max_items=MAX_ROWS)

    async def put(self, sha256: str, size: int, data: bytes) -> None:
        """Returns once the row is committed, stored at the database's time; raises what
        its batch's insert raised."""
        # Shielded: the flush task owns the future; a cancelled put stops waiting, no more.
        await asyncio.shield(self._rows.submit((sha256, size, data)))

    async def _insert(self, rows: list[_Row]) -> None:
        # One row per digest: ON CONFLICT DO UPDATE may not touch a row twice in one
        # statement, and two puts of the same bytes in one batch are one blob.
        unique = list({row[0]: row for row in rows}.values())
        pool = await self._pool()
        await pool.execute(
            _PUT_MANY,
            [r[0] for r in unique],
            [r[1] for r in unique],
            [r[2] for r in unique],
        )
