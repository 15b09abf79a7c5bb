"""Rebuild a projection from the event store, swapping the new rows in atomically.

A read model is disposable: after a bug fix, a new column or plain corruption, it is
recomputed from the source of truth. The whole rebuild is ONE transaction, so readers see
the old rows until commit and the new ones after it, never a half-built table (see
`Projection.reset` for why this deletes instead of truncating).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from bus.config.metrics import PROJECTION_MESSAGES_SKIPPED as MESSAGES_SKIPPED
from bus.config.settings import Settings
from bus.store.eventstore import PostgresEventStore
from domain.errors import NewerSchema
from domain.events import RecordedEvent
from domain.registry import AGGREGATES
from projections.base import (
    PROJECTION_LOCK,
    TRANSIENT_ERRORS,
    Checkpoints,
    Projection,
    announce,
    apply_checkpointed,
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

log = logging.getLogger("cairn.projections")

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

# Raised through, never skipped: a transient failure fails the rebuild (run it again), and
# so does an event of a newer schema version (run it with the newer version).
_NOT_SKIPPED: tuple[type[BaseException], ...] = (NewerSchema, *TRANSIENT_ERRORS)


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild did: events applied, and events skipped because the projection
    cannot apply them (each logged and counted, as the live projector does)."""

    applied: int
    skipped: int


async def rebuild(pool: asyncpg.Pool, name: str, settings: Settings | None = None) -> int:
    """Recompute projection `name` from every event of its aggregates; return events applied.

    Raises KeyError for an unknown projection name. See `rebuild_report`."""
    return (await rebuild_report(pool, name, settings)).applied


async def rebuild_report(
    pool: asyncpg.Pool, name: str, settings: Settings | None = None
) -> Rebuilt:
    """Recompute projection `name` from every event of its aggregates.

    An event the projection cannot apply (bad data at a version this code knows) is skipped
    exactly as the live projector skips it (runner.py): in a savepoint, logged, counted in
    `cairn_projection_messages_skipped_total{reason="unappliable"}`, its stream's checkpoint
    left before it; so the rebuilt rows are the live ones, and one such event no longer
    makes every rebuild fail.

    An event of a known type at a schema version NEWER than this code reads (a newer
    deployment wrote it) is not skipped: the rebuilt read model would lack it, and the
    rest of its stream, for good, where the live projector only waits for the upgrade.
    The rebuild raises NewerSchema instead (the admin API: 503 upgrade_in_progress) and
    its transaction rolls back, leaving the read model as it was; run it with the newer
    version. `settings` lets the projection drop what the live system has
    already dropped (finished tasks past their retention, `Projection.after_rebuild`).

    Raises KeyError for an unknown projection name.
    """
    projection = PROJECTIONS[name]
    try:
        return await _rebuild(pool, projection, settings)
    except NewerSchema as e:
        log.error(
            "rebuild of %s refused: the event store holds a %s event of schema version %d,"
            " newer than this code reads (%d); the read model is left as it was. Rebuild"
            " with the newer version of Cairn",
            name,
            e.event_type,
            e.stored_version,
            e.known_version,
        )
        raise


async def _rebuild(
    pool: asyncpg.Pool, projection: Projection, settings: Settings | None
) -> Rebuilt:
    store = PostgresEventStore(pool)
    applied = skipped = 0
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
        while True:
            page = await store.read_all(after, limit=PAGE)
            if not page:
                break
            mine = [ev for ev in page if ev.aggregate in projection.aggregates]
            if mine:
                try:
                    # A page in a savepoint, its writes pipelined (projections/pipelined.py)
                    # and its usage counters summed and written once (UsageTally).
                    async with conn.transaction():
                        async with pipelined(conn) as via, deferred_usage(via):
                            applied += await apply_events(via, projection, mine, store)
                    last = mine[-1]
                except _NOT_SKIPPED:
                    raise
                except Exception:
                    # Some event of the page cannot be applied: redo the page one event
                    # per savepoint, skipping only those.
                    n, bad, page_last = await _apply_isolated(conn, projection, mine, store)
                    applied += n
                    skipped += bad
                    last = page_last or last
            after = page[-1].position
        if settings is not None:
            await projection.after_rebuild(conn, settings)
        if last is not None:
            await record_status(conn, projection.name, last)
            await announce(conn, [projection])  # rows may be claimable again
    if skipped:
        MESSAGES_SKIPPED.labels("unappliable").inc(skipped)
    return Rebuilt(applied, skipped)


async def _apply_isolated(
    conn: asyncpg.Connection,
    projection: Projection,
    events: list[RecordedEvent],
    store: PostgresEventStore,
) -> tuple[int, int, RecordedEvent | None]:
    """Apply `events` one savepoint each; (applied, skipped, the last applied event)."""
    checkpoints = await Checkpoints.lock(conn, projection.name, [e.stream_id for e in events])
    applied = skipped = 0
    last = None
    for ev in events:
        try:
            async with conn.transaction():  # a savepoint; usage written at once, not tallied
                n = await apply_checkpointed(conn, projection, ev, store, checkpoints)
        except _NOT_SKIPPED:
            raise
        except Exception as e:
            skipped += 1
            log.error(
                "rebuild skipping event %s (%s v%d) for projection %s: %r",
                ev.id,
                ev.stream_id,
                ev.version,
                projection.name,
                e,
            )
            continue
        applied += n
        if n:
            last = ev
    await checkpoints.save(conn)
    return applied, skipped, last
