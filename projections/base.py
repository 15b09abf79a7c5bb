"""What a projection is, and the one function that applies an event to it exactly once.

Kafka delivers at least once and may lose data (the embedded broker is memory-only), so a
projection cannot trust what arrives: `apply_event` keeps a per-stream checkpoint
(`readmodel.applied`) in the caller's transaction, next to the effect. Duplicates are
skipped, gaps are filled from the event store (the source of truth), and effect and
checkpoint commit or roll back together. The live projector (`runner.py`) and the rebuild
(`rebuild.py`) both go through here, which is why they produce the same rows.
"""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import asyncpg

from bus.config.settings import Settings
from domain.events import RecordedEvent
from domain.ports import EventStore
from domain.registry import require_known

# Transaction-scoped advisory lock. The live projector takes it shared in every transaction;
# a rebuild takes it exclusive, so it never interleaves with live applies (the live
# projector simply waits, then finds everything the rebuild applied already checkpointed).
PROJECTION_LOCK = 727_100


# Postgres failures worth retrying: the same batch may well succeed a moment later. Anything
# else an apply raises is deterministic (the event cannot be applied): the live projector
# (runner.py) and the rebuild (rebuild.py) skip that event, in a savepoint, and count it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.LockNotAvailableError,
)


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
    # A channel NOTIFYed in the transaction that applied any of this projection's events,
    # for those who wait on its tables (the claiming workers: bus/store/pickup.py).
    announces: ClassVar[str | None] = None

    async def apply(self, conn: asyncpg.Connection, ev: RecordedEvent) -> None:
        raise NotImplementedError

    async def reset(self, conn: asyncpg.Connection) -> None:
        """Forget everything this projection wrote (rebuild). Override for shared tables.

        DELETE rather than TRUNCATE: TRUNCATE takes an ACCESS EXCLUSIVE lock that would
        block every reader until the rebuild commits; DELETE lets readers keep seeing the
        old rows (MVCC) until the rebuilt ones replace them atomically at commit."""
        for table in self.tables:
            await conn.execute(f"DELETE FROM {table}")

    async def after_rebuild(self, conn: asyncpg.Connection, settings: Settings) -> None:
        """At the end of a rebuild, in its transaction: drop what the live system drops
        from this read model besides applying events (none by default)."""


class Checkpoints:
    """One projection's per-stream checkpoints (`readmodel.applied`) within one transaction.

    `lock` upserts and locks the rows of every stream a batch touches in one statement and
    reads their versions; `apply_checkpointed` consults and advances them in memory; `save`
    writes the advanced ones back in one statement before commit. Per event, that was two
    round trips (the projector's largest cost per small file, issue 13); per batch it is
    two per projection.

    Why the lock: the row locks serialise two consumers that briefly hold the same
    partition (a rebalance), so one of them sees the other's checkpoints instead of both
    applying the same events. Rows are locked in stream order, so two transactions locking
    overlapping sets cannot deadlock on them. (DO UPDATE rather than DO NOTHING + SELECT:
    a row inserted concurrently would be invisible to that SELECT.)"""

    def __init__(self, projection: str, versions: dict[str, int]) -> None:
        self.projection = projection
        self._versions = versions
        self._advanced: set[str] = set()

    @classmethod
    async def lock(
        cls, conn: asyncpg.Connection, projection: str, stream_ids: Iterable[str]
    ) -> Checkpoints:
        ids = sorted(set(stream_ids))  # once each: an upsert may not touch a row twice
        rows = await conn.fetch(
            "INSERT INTO readmodel.applied (projection, stream_id, version)"
            " SELECT $1, s, 0 FROM unnest($2::text[]) AS s ORDER BY s"
            " ON CONFLICT (projection, stream_id)"
            " DO UPDATE SET version = readmodel.applied.version"
            " RETURNING stream_id, version",
            projection,
            ids,
        )
        return cls(projection, {r["stream_id"]: r["version"] for r in rows})

    def version(self, stream_id: str) -> int:
        """The stream's applied version; KeyError for a stream `lock` was not given."""
        return self._versions[stream_id]

    def advance(self, stream_id: str, version: int) -> None:
        self._versions[stream_id] = version
        self._advanced.add(stream_id)

    async def save(self, conn: asyncpg.Connection) -> None:
        """Write the advanced checkpoints (in the same transaction as the effects)."""
        if not self._advanced:
            return
        ids = sorted(self._advanced)
        # An upsert rather than UPDATE ... FROM unnest(...): ON CONFLICT finds each row
        # through the primary key whatever the planner thinks. The UPDATE's cached generic
        # plan (made while the table was small) hash-joined the batch against every row of
        # the projection: 26 ms a batch at 24,000 streams, growing with each stream ever
        # projected (issue 13, seen with auto_explain). The rows exist (`lock` made them).
        await conn.execute(
            "INSERT INTO readmodel.applied (projection, stream_id, version)"
            " SELECT $1, u.stream_id, u.version"
            " FROM unnest($2::text[], $3::bigint[]) AS u(stream_id, version)"
            " ON CONFLICT (projection, stream_id) DO UPDATE SET version = excluded.version",
            self.projection,
            ids,
            [self._versions[i] for i in ids],
        )
        self._advanced.clear()


async def apply_checkpointed(
    conn: asyncpg.Connection,
    projection: Projection,
    ev: RecordedEvent,
    event_store: EventStore,
    checkpoints: Checkpoints,
) -> int:
    """Apply `ev` unless `checkpoints` says it was; return how many events were applied.

    0 = a duplicate; 1 = the event; more = a gap before it was filled from `event_store`.
    The checkpoint advances only once every effect is written: if one raises (inside a
    savepoint the caller rolls back), the stream stays where it was. An event of a schema
    version newer than this code reads raises NewerSchema before any effect."""
    checkpoint = checkpoints.version(ev.stream_id)
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
        # Never applied as if it were the current version, whether the projection decodes
        # it or reads its fields by name: NewerSchema (the caller holds, or refuses).
        require_known(e)
    for e in todo:
        await projection.apply(conn, e)
    checkpoints.advance(ev.stream_id, ev.version)
    return len(todo)


async def apply_event(
    conn: asyncpg.Connection,
    projection: Projection,
    ev: RecordedEvent,
    event_store: EventStore,
    *,
    update_status: bool = True,
) -> int:
    """Apply one event to `projection` unless already applied; return how many were applied.

    0 = a duplicate; 1 = the event; more = a gap before it was filled from `event_store`.
    Must run inside a transaction on `conn`: the checkpoint row stays locked until commit.
    Callers applying many events in one transaction may pass `update_status=False` and call
    `record_status` once at the end (one status write per transaction instead of per event);
    the live projector locks a whole batch's checkpoints at once (`Checkpoints`).
    """
    n = await apply_events(conn, projection, [ev], event_store)
    if n and update_status:
        await record_status(conn, projection.name, ev)
    return n


async def apply_events(
    conn: asyncpg.Connection,
    projection: Projection,
    events: Sequence[RecordedEvent],
    event_store: EventStore,
) -> int:
    """Apply `events` (in position order) to `projection`, each unless already applied, with
    their checkpoints locked and saved at once; return how many events were applied.

    Any failure propagates (the caller's transaction rolls back). The live projector,
    which must skip an unappliable event in a savepoint, drives `Checkpoints` itself."""
    checkpoints = await Checkpoints.lock(conn, projection.name, [e.stream_id for e in events])
    applied = 0
    for ev in events:
        applied += await apply_checkpointed(conn, projection, ev, event_store, checkpoints)
    await checkpoints.save(conn)
    return applied


async def announce(conn: asyncpg.Connection, changed: Sequence[Projection]) -> None:
    """NOTIFY the channels of the projections in `changed` that announce their changes; call
    inside the transaction that wrote them (Postgres delivers at commit, never on rollback).
    One statement for them all, and none for a batch that changed nothing announced."""
    channels = sorted({p.announces for p in changed if p.announces})
    if channels:
        await conn.execute(_ANNOUNCE, channels)


_ANNOUNCE = "SELECT pg_notify(c, '') FROM unnest($1::text[]) AS t(c)"


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


USAGE_COLUMNS = (
    "uploads_started",
    "uploads_completed",
    "bytes_uploaded",
    "files_created",
    "files_deleted",
)


class UsageTally:
    """usage_daily deltas gathered over one transaction, written in one statement.

    Every upload and file event bumps its owner's counters for the day: one upsert each,
    on a row that every batch of that owner's events updates, so concurrent projector
    transactions queued on its lock one after another. Summed per batch, the row is
    written (and locked) once, just before commit."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._sums: dict[tuple[str, date], list[int]] = {}

    def add(self, owner: str, day: date, deltas: dict[str, int]) -> None:
        sums = self._sums.setdefault((owner, day), [0] * len(USAGE_COLUMNS))
        for col, n in deltas.items():
            sums[USAGE_COLUMNS.index(col)] += n

    async def flush(self) -> None:
        if not self._sums:
            return
        keys = sorted(self._sums)  # rows locked in one order: no deadlock between batches
        cols = ", ".join(USAGE_COLUMNS)
        arrays = ", ".join(f"${i + 3}::bigint[]" for i in range(len(USAGE_COLUMNS)))
        updates = ", ".join(
            f"{c} = readmodel.usage_daily.{c} + excluded.{c}" for c in USAGE_COLUMNS
        )
        await self.conn.execute(
            f"INSERT INTO readmodel.usage_daily (owner, day, {cols})"
            f" SELECT * FROM unnest($1::text[], $2::date[], {arrays})"
            f" ON CONFLICT (owner, day) DO UPDATE SET {updates}",
            [k[0] for k in keys],
            [k[1] for k in keys],
            *([self._sums[k][i] for k in keys] for i in range(len(USAGE_COLUMNS))),
        )
        self._sums.clear()


# The tally of the transaction the current task is applying, if it defers usage.
_TALLY: contextvars.ContextVar[UsageTally | None] = contextvars.ContextVar(
    "usage_tally", default=None
)


@contextlib.asynccontextmanager
async def deferred_usage(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Within this block, `bump_usage` on `conn` adds to a tally written at its end.

    For a transaction that applies many events (a projector batch, a rebuild). Not inside
    savepoints that may roll back: a rolled-back event's deltas would still be written.
    If the block raises, nothing is written (the transaction is rolled back anyway)."""
    tally = UsageTally(conn)
    token = _TALLY.set(tally)
    try:
        yield
    finally:
        _TALLY.reset(token)
    await tally.flush()


def counting_usage(update: str, column: str, day: int, delta: int) -> str:
    """`update` (an UPDATE ... RETURNING owner) that also adds `$delta` to the owner's
    `column` of usage_daily on `$day`, if it updated a row: one write statement.

    For an event whose owner only its row knows: reading the owner back (RETURNING, then
    `bump_usage`) would make the projector's pipelined writes wait for a round trip at
    every such event (projections/pipelined.py); a write waits for nothing. Added at once
    rather than tallied (`deferred_usage`): the sum is the same."""
    if column not in USAGE_COLUMNS:
        raise ValueError(f"bad usage column {column}")
    return (
        f"WITH updated AS ({update})"
        f" INSERT INTO readmodel.usage_daily (owner, day, {column})"
        f" SELECT owner, ${day}::date, ${delta}::bigint FROM updated"
        f" ON CONFLICT (owner, day) DO UPDATE"
        f" SET {column} = readmodel.usage_daily.{column} + excluded.{column}"
    )


async def reset_usage(conn: asyncpg.Connection, *columns: str) -> None:
    """Zero `columns` of usage_daily (a projection's own, before it is rebuilt: the table is
    shared by the uploads and files projections), then drop the rows nobody contributes to
    any more (the incremental path never creates all-zero rows)."""
    if not columns or not set(columns) <= set(USAGE_COLUMNS):
        raise ValueError(f"bad usage columns {columns}")
    await conn.execute(f"UPDATE readmodel.usage_daily SET {', '.join(f'{c} = 0' for c in columns)}")
    await conn.execute(
        "DELETE FROM readmodel.usage_daily WHERE " + " AND ".join(f"{c} = 0" for c in USAGE_COLUMNS)
    )


async def bump_usage(conn: asyncpg.Connection, owner: str, day: date, **deltas: int) -> None:
    """Add to the usage_daily counters of (owner, day), creating the row if needed.

    Deferred to the end of the transaction inside `deferred_usage` (on the same `conn`)."""
    cols = list(deltas)
    if not cols or not set(cols) <= set(USAGE_COLUMNS):
        raise ValueError(f"bad usage columns {cols}")
    tally = _TALLY.get()
    if tally is not None and tally.conn is conn:
        tally.add(owner, day, deltas)
        return
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
