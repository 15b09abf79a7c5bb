"""Rebuild a projection from the event store, swapping the new rows in atomically.

A read model is disposable: after a bug fix, a new column or plain corruption, it is
recomputed from the source of truth. The whole rebuild is ONE transaction, so readers see
the old rows until commit and the new ones after it, never a half-built table (see
`Projection.reset` for why this deletes instead of truncating).
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from bus.store.eventstore import PostgresEventStore
from domain.events import RecordedEvent
from domain.registry import AGGREGATES
from projections.base import (
    PROJECTION_LOCK,
    Projection,
    announce,
    apply_events,
    deferred_usage,
    record_status,
)
from projections.buckets import BucketsProjection
from projections.fetches import FetchesProjection
from projections.files import FilesProjection
from projections.pipelined import pipelined
from projections.tasks import TasksProjection
from projections.uploads import UploadsProjection

PROJECTIONS: dict[str, Projection] = {
    p.name: p
    for p in (
        UploadsProjection(),
        FilesProjection(),
        BucketsProjection(),
        TasksProjection(),
        FetchesProjection(),
    )
}
"""Every read model by name: the projector runs them all, the admin API rebuilds them by
name. Each names the aggregates it reads by their registry spec (domain.registry)."""


def unprojected(projections: Mapping[str, Projection] | None = None) -> list[str]:
    """The registered aggregates (domain/registry.py) that no read model reads, by name.

    Every aggregate must feed at least one projection: its lists, stats and queries are
    read models, so an aggregate added to the registry and forgotten here would be
    written and never readable. tests/projections/test_registry.py fails while this is
    not empty; the aggregates a projection names must exist in the registry too.
    """
    read = {
        a
        for p in (PROJECTIONS if projections is None else projections).values()
        for a in p.aggregates
    }
    return sorted(set(AGGREGATES) - read)


PAGE = 5000


async def rebuild(pool: asyncpg.Pool, name: str) -> int:
    """Recompute projection `name` from every event of its aggregates; return events applied.

    Raises KeyError for an unknown projection name.
    """
    projection = PROJECTIONS[name]
    store = PostgresEventStore(pool)
    applied = 0
    async with pool.acquire() as conn, conn.transaction():
        # Exclusive: waits for live projector transactions in flight (they hold it shared)
        # and holds new ones off until commit, so no live apply interleaves with the replay
        # and none can be lost between the reset and the commit.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PROJECTION_LOCK)
        await projection.reset(conn)
        await conn.execute("DELETE FROM readmodel.applied WHERE projection = $1", projection.name)
        await conn.execute("DELETE FROM readmodel.status WHERE projection = $1", projection.name)
        # Position order keeps each stream in version order. Events appended while we replay
        # are picked up by later pages; the live projector then skips them as duplicates.
        after = 0
        last: RecordedEvent | None = None
        # Writes pipelined (projections/pipelined.py) and usage counters summed over the
        # whole replay, written once (UsageTally); all sent before the commit.
        async with pipelined(conn) as via, deferred_usage(via):
            while True:
                page = await store.read_all(after, limit=PAGE)
                if not page:
                    break
                mine = [ev for ev in page if ev.aggregate in projection.aggregates]
                if mine:
                    # A page's checkpoints in two statements (see Checkpoints).
                    applied += await apply_events(via, projection, mine, store)
                    last = mine[-1]
                after = page[-1].position
        if last is not None:
            await record_status(conn, projection.name, last)
            await announce(conn, [projection])  # rows may be claimable again
    return applied
