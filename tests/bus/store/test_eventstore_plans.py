"""The batch append's cost does not grow with the store (migrations/0015): however many
command ids are recorded, checking a batch's ids probes the index instead of reading the
whole of eventstore.applied_commands."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from bus.store.eventstore import PostgresEventStore
from domain.events import EventMeta, NewEvent
from tests.plans import explaining_pool, scans_table

META = EventMeta(occurred_at=datetime(2026, 1, 1, tzinfo=UTC), owner="alice")
CHECK = "SELECT coalesce(array_agg(c.n), '{}')"  # the function's first statement


async def _batch(store: PostgresEventStore, n: int = 32) -> None:
    await asyncio.gather(
        *[
            store.append(
                f"upload-{uuid.uuid4()}", 0, [NewEvent("Thing", {})], META, str(uuid.uuid4())
            )
            for _ in range(n)
        ]
    )


async def test_checking_command_ids_never_reads_the_whole_table(db_url: str) -> None:
    async with explaining_pool(db_url) as (pool, plans):
        store = PostgresEventStore(pool)
        # While the table is small, the session plans the function's statements once
        # (tests/plans.py: generic plans, kept).
        for _ in range(3):
            await _batch(store)
        assert plans.of(CHECK), "auto_explain must show the function's statements"
        # Then the store holds many applied commands (without ANALYZE, as between autovacuums).
        await pool.execute(
            "INSERT INTO eventstore.applied_commands (command_id, stream_id, first_version,"
            " last_version) SELECT 'filler-' || i, 'filler-' || i, 1, 1"
            " FROM generate_series(1, 30000) AS i"
        )
        plans.clear()
        await _batch(store)
        checks = plans.of(CHECK)
        assert checks
        for plan in checks:
            assert not scans_table(plan, "applied_commands"), plan
