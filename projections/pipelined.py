"""A projector transaction's writes, sent to PostgreSQL as pipelines instead of one by one.

The projector applies a poll batch (up to 500 events) in one transaction, and most events
cost one statement: an INSERT or UPDATE whose result nobody reads. Sent one by one, each
is a full asyncpg call and a PostgreSQL Sync (issue 13: asyncpg's execute was about half
of the projector's busy time under 32 writers). Here such statements are queued, and a run
of consecutive identical statements (the same SQL for events that follow each other in a
batch, e.g. one upload initiated after another) goes out as one `executemany`, which
asyncpg pipelines: one round trip and one Sync for the run.

Order is exactly the order the projection issued the statements in: only their sending is
deferred. Anything whose result is needed (`fetch`, `fetchrow`, `fetchval`) first sends
everything queued, so it sees every earlier write. The owner must `flush` before it relies
on the writes (before the checkpoints are saved and the transaction commits). A queued
statement that fails raises from whichever call sends it, not from the `execute` that
queued it, which is why the projector treats a failure anywhere in a batch as the batch's
and then redoes it event by event without this class (projections/runner.py).
"""

from __future__ import annotations

from typing import Any

import asyncpg


class PipelinedWrites:
    """Wraps one connection inside a transaction; offers the calls projections make."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        # (query, [args, ...]) in issue order; consecutive identical queries share a run.
        self._runs: list[tuple[str, list[tuple[Any, ...]]]] = []
        self.queued = 0
        self.round_trips = 0  # statements or pipelines sent (for tests and tuning)

    async def execute(self, query: str, *args: Any) -> str:
        """Queue a parameterised write; return "" (its status is not known yet).

        Without arguments the query may hold several statements (simple protocol), which
        cannot be pipelined: it is sent at once, after what is queued."""
        if not args:
            await self.flush()
            self.round_trips += 1
            result: str = await self.conn.execute(query)
            return result
        if self._runs and self._runs[-1][0] == query:
            self._runs[-1][1].append(args)
        else:
            self._runs.append((query, [args]))
        self.queued += 1
        return ""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        await self.flush()
        self.round_trips += 1
        rows: list[asyncpg.Record] = await self.conn.fetch(query, *args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        await self.flush()
        self.round_trips += 1
        row: asyncpg.Record | None = await self.conn.fetchrow(query, *args)
        return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        await self.flush()
        self.round_trips += 1
        return await self.conn.fetchval(query, *args)

    async def flush(self) -> None:
        """Send everything queued, in order; a run of one goes as a plain execute."""
        runs, self._runs = self._runs, []
        for query, rows in runs:
            self.round_trips += 1
            if len(rows) == 1:
                await self.conn.execute(query, *rows[0])
            else:
                await self.conn.executemany(query, rows)
