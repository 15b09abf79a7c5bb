"""Saving a batch's checkpoints does not grow with the projection (projections/base.py,
`Checkpoints.save`): however many streams a projection has seen, the rows a batch
advanced are found through the primary key, not by reading all of the projection's rows."""

from __future__ import annotations

import asyncpg

from projections.base import Checkpoints
from tests.plans import explaining_pool, scans_table

SAVE = "INSERT INTO readmodel.applied (projection, stream_id, version) SELECT $1, u.stream_id"


async def _lock_and_save(conn: asyncpg.Connection, streams: list[str], version: int) -> None:
    seen = await Checkpoints.lock(conn, "things", streams)
    for s in streams:
        seen.advance(s, version)
    await seen.save(conn)


async def test_saving_checkpoints_never_reads_every_row_of_the_projection(db_url: str) -> None:
    async with explaining_pool(db_url) as (pool, plans), pool.acquire() as conn:
        streams = [f"thing-{i}" for i in range(32)]
        # Planned once while the projection is small (tests/plans.py: generic plans, kept).
        async with conn.transaction():
            await _lock_and_save(conn, streams, 1)
        # Then the projection has seen many streams (no ANALYZE, as between autovacuums).
        await conn.execute(
            "INSERT INTO readmodel.applied (projection, stream_id, version)"
            " SELECT 'things', 'filler-' || i, 1 FROM generate_series(1, 30000) AS i"
        )
        plans.clear()
        async with conn.transaction():
            await _lock_and_save(conn, streams, 2)
        saves = plans.of(SAVE)
        assert saves, "auto_explain must show the save"
        for plan in saves:
            assert not scans_table(plan, "applied"), plan
        versions = await conn.fetch(
            "SELECT version FROM readmodel.applied WHERE projection = 'things'"
            " AND stream_id = ANY($1::text[])",
            streams,
        )
        assert [r["version"] for r in versions] == [2] * len(streams)
