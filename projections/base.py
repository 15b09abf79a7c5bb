"""What a projection is, and the one function that applies an event to it exactly once.

Kafka delivers at least once and may lose data (the embedded broker is memory-only), so a
projection cannot trust what arrives: `apply_event` keeps a per-stream checkpoint
(`readmodel.applied`) in the caller's transaction, next to the effect. Duplicates are
skipped, gaps are filled from the event store (the source of truth), and effect and
checkpoint commit or roll back together. The live projector (`runner.py`) and the rebuild
(`rebuild.py`) both go through here, which is why they produce the same rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import asyncpg

from domain.events import RecordedEvent
from domain.ports import EventStore

# Transaction-scoped advisory lock. The live projector takes it shared in every transaction;
# a rebuild takes it exclusive, so it never interleaves with live applies (the live
# projector simply waits, then finds everything the rebuild applied already checkpointed).
PROJECTION_LOCK = 727_100


class GapNotFillable(Exception):
    """The event store does not hold the events missing before a delivered event."""


class Projection:
    """A read model fed by the events of some aggregates.

    `apply` runs inside the caller's transaction and is called exactly once per event, in
    stream order (see `apply_event`); it only has to write the effect.
    """

    name: ClassVar[str] = ""
    aggregates: ClassVar[tuple[str, ...]] = ()
    # Tables this projection owns outright: emptied by a rebuild.
    tables: ClassVar[tuple[str, ...]] = ()

    async def apply(self, conn: asyncpg.Connection, ev: RecordedEvent) -> None:
        raise NotImplementedError

    async def reset(self, conn: asyncpg.Connection) -> None:
        """Forget everything this projection wrote (rebuild). Override for shared tables.

        DELETE rather than TRUNCATE: TRUNCATE takes an ACCESS EXCLUSIVE lock that would
        block every reader until the rebuild commits; DELETE lets readers keep seeing the
        old rows (MVCC) until the rebuilt ones replace them atomically at commit."""
        for table in self.tables:
            await conn.execute(f"DELETE FROM {table}")


async def apply_event(
    conn: asyncpg.Connection,
    projection: Projection,
    ev: RecordedEvent,
    event_store: EventStore,
    *,
    update_status: bool = True,
) -> int:
    """Apply `ev` to `projection` unless already applied; return how many events were applied.

    0 = a duplicate; 1 = the event; more = a gap before it was filled from `event_store`.
    Must run inside a transaction on `conn`: the checkpoint row stays locked until commit.
    Callers applying many events in one transaction may pass `update_status=False` and call
    `record_status` once at the end (one status write per transaction instead of per event).
    """
    # Upsert-and-lock the checkpoint row in one round trip. The row lock serialises two
    # consumers that briefly hold the same partition (rebalance), so one of them sees the
    # other's checkpoint instead of both applying the same event. (DO UPDATE rather than
    # DO NOTHING + SELECT: a row inserted concurrently would be invisible to that SELECT.)
    checkpoint = await conn.fetchval(
        "INSERT INTO readmodel.applied (projection, stream_id, version) VALUES ($1, $2, 0)"
        " ON CONFLICT (projection, stream_id)"
        " DO UPDATE SET version = readmodel.applied.version RETURNING version",
        projection.name,
        ev.stream_id,
    )
    if ev.version <= checkpoint:
        return 0
    todo: Sequence[RecordedEvent] = [ev]
    if ev.version > checkpoint + 1:
        # Earlier events never arrived (or the broker lost them): take them from the store.
        missing = [
            e
            for e in await event_store.read_stream(ev.stream_id, from_version=checkpoint + 1)
            if e.version < ev.version
        ]
        if [e.version for e in missing] != list(range(checkpoint + 1, ev.version)):
            raise GapNotFillable(
                f"{projection.name}: {ev.stream_id} is at {checkpoint}, got version"
                f" {ev.version}, the event store has {[e.version for e in missing]}"
            )
        todo = [*missing, ev]
    for e in todo:
        await projection.apply(conn, e)
    await conn.execute(
        "UPDATE readmodel.applied SET version = $3 WHERE projection = $1 AND stream_id = $2",
        projection.name,
        ev.stream_id,
        ev.version,
    )
    if update_status:
        await record_status(conn, projection.name, ev)
    return len(todo)


async def record_status(conn: asyncpg.Connection, projection: str, ev: RecordedEvent) -> None:
    """Note in readmodel.status that `projection` has applied `ev`.

    GREATEST: transactions for different partitions may commit out of position order; the
    status must never move backwards. Every projector transaction writes this one row, so
    write it last, just before commit, to hold its lock briefly."""
    await conn.execute(
        """
        INSERT INTO readmodel.status AS s (projection, last_position, last_event_at, updated_at)
        VALUES ($1, $2, $3, now())
        ON CONFLICT (projection) DO UPDATE SET
            last_event_at = CASE WHEN excluded.last_position >= s.last_position
                                 THEN excluded.last_event_at ELSE s.last_event_at END,
            last_position = greatest(s.last_position, excluded.last_position),
            updated_at = now()
        """,
        projection,
        ev.position,
        ev.occurred_at,
    )


# ---- helpers for projections ---------------------------------------------------------


def utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def bump_usage(conn: asyncpg.Connection, owner: str, day: date, **deltas: int) -> None:
    """Add to the usage_daily counters of (owner, day), creating the row if needed."""
    cols = list(deltas)
    allowed = {
        "uploads_started",
        "uploads_completed",
        "bytes_uploaded",
        "files_created",
        "files_deleted",
    }
    if not cols or not set(cols) <= allowed:
        raise ValueError(f"bad usage columns {cols}")
    placeholders = ", ".join(f"${i + 3}" for i in range(len(cols)))
    updates = ", ".join(f"{c} = readmodel.usage_daily.{c} + excluded.{c}" for c in cols)
    await conn.execute(
        f"INSERT INTO readmodel.usage_daily (owner, day, {', '.join(cols)})"
        f" VALUES ($1, $2, {placeholders})"
        f" ON CONFLICT (owner, day) DO UPDATE SET {updates}",
        owner,
        day,
        *deltas.values(),
    )
