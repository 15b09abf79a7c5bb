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
everything queued, so it sees every earlier write. `pipelined` sends what is left when its
block ends, before the caller saves its checkpoints and commits. A queued
statement that fails raises from whichever call sends it, not from the `execute` that
queued it, which is why the projector treats a failure anywhere in a batch as the batch's
and then redoes it event by event without this class (projections/runner.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import asyncpg

T = TypeVar("T")


class PipelinedWrites:
    """Wraps one connection inside a transaction; offers the calls projections make."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        # (query, [args, ...]) in issue order; consecutive identical queries share a run.
        self._runs: list[tuple[str, list[tuple[Any, ...]]]] = []
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
        return ""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._read(self.conn.fetch, query, args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._read(self.conn.fetchrow, query, args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._read(self.conn.fetchval, query, args)

    async def _read(
        self, call: Callable[..., Awaitable[T]], query: str, args: tuple[Any, ...]
    ) -> T:
        await self.flush()  # the read must see every write issued before it
        self.round_trips += 1
        return await call(query, *args)

    async def flush(self) -> None:
        """Send everything queued, in order; a run of one goes as a plain execute."""
        runs, self._runs = self._runs, []
        for query, rows in runs:
            self.round_trips += 1
            if len(rows) == 1:
                await self.conn.execute(query, *rows[0])
            else:
                await self.conn.executemany(query, rows)


@asynccontextmanager
async def pipelined(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """`conn`'s writes pipelined within the block (for projections, which take a
    connection), all sent when it ends normally; if it raises, nothing more is sent (the
    caller's transaction rolls back)."""
    writes = PipelinedWrites(conn)
    yield cast(asyncpg.Connection, writes)  # offers every call projections make
    await writes.flush()
