"""Which streams reference which chunk: the read model the blob garbage collector trusts.

Why not a Kafka-fed projection like the others: the collector deletes bytes, so it must
know every reference recorded up to the moment it decides. A projection fed from Kafka
lags by an unknown amount (a stopped projector lags for hours), and a reference it has not
seen yet can point at an *old* blob (a final tus upload or a file copy reuses the chunks of
another stream), which no mtime-based grace would protect. So this table is maintained
from the event store itself, in position order, with one position checkpoint, by
`catch_up`, which the cleanup runs right before deciding. Reading `position > checkpoint`
never skips an event: the event store serialises appends, so positions become visible in
commit order (the relay relies on the same property).

Why not compute the references in SQL from eventstore.events at every run: that rescans
the whole history each time and reads raw JSON, bypassing the upcasters; this table is
incremental and goes through `RecordedEvent` (upcast) like every other consumer.

Rules (one row per (sha256, stream)):
- UploadChunkStored, UploadBytesAppended, UploadInitiated (a final upload's manifest) and
  FileCreated add live references;
- FetchBytesAppended adds a fetch's references and FetchCancelled releases them (a failed
  fetch may be retried; a completed one's file holds its own references);
- UploadExpired, UploadAborted, UploadFailed release the upload's references; FileDeleted
  releases the file's; FileCreated with an `upload_id` releases that upload's (the file now
  holds the chunks, so deleting the file can free them). A completed upload whose file was
  never created keeps its references: never wrong, at worst garbage kept.
- FileReplaced (an object's new version) releases the stream's references, then adds the
  new manifest's: a chunk both versions use stays live.
- A stream may grow again after a release: an object (a file whose id is derived from
  its bucket and key) is deleted and then written again, or replaced. So effects are
  ordered: `effects` keeps, per (sha256, stream), the state after the last event of the
  page (live, or released at a time), and `_apply` first releases the streams released in
  the page (rows of earlier pages), then writes the page's rows with their final state.
  A chunk re-added after a release is therefore live again, whatever the page boundaries.
- A release keeps its time: a chunk is collectable only once its last reference was
  released longer than the grace ago, which covers an operation that read a manifest just
  before the release and records its own reference just after.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

import asyncpg

from domain.events import RecordedEvent, event_time
from domain.fetches.events import FetchBytesAppended, FetchCancelled, FetchSegmentBytesAppended
from domain.files.events import FileCreated, FileDeleted, FileReplaced
from domain.ports import EventStore
from domain.registry import stream_id_for
from domain.uploads.events import (
    RELEASING,
    UploadBytesAppended,
    UploadChunkStored,
    UploadInitiated,
)
from domain.values import Piece

PAGE = 5000


class Effects(NamedTuple):
    """What a run of events does to the references.

    `refs`: (sha256, stream) -> (size, released at, or None while live), the state after
    the run's last event touching that row; `releases`: stream -> when it was first
    released in the run, for its rows recorded before the run."""

    refs: dict[tuple[str, str], tuple[int, datetime | None]]
    releases: dict[str, datetime]


def effects(events: Iterable[RecordedEvent]) -> Effects:
    """What a run of events does, in order. Pure, for tests and `catch_up`."""
    refs: dict[tuple[str, str], tuple[int, datetime | None]] = {}
    by_stream: dict[str, set[tuple[str, str]]] = {}
    releases: dict[str, datetime] = {}

    def add(stream: str, pieces: Iterable[Piece]) -> None:
        for p in pieces:
            refs[(p.sha256, stream)] = (p.size, None)
            by_stream.setdefault(stream, set()).add((p.sha256, stream))

    def release(stream: str, at: datetime) -> None:
        # Rows of earlier runs: the first release after they were live is theirs (a later
        # re-add in this run overwrites their row with its own final state).
        releases.setdefault(stream, at)
        for k in by_stream.get(stream, ()):
            size, released = refs[k]
            if released is None:
                refs[k] = (size, at)

    for ev in events:
        match ev.payload:
            case UploadChunkStored(sha256=sha256, size=size):
                add(ev.stream_id, [Piece(sha256, size)])
            case UploadBytesAppended(pieces=pieces):
                add(ev.stream_id, pieces)
            case UploadInitiated(manifest=pieces):  # a final upload's parts' pieces
                add(ev.stream_id, pieces)
            case ended if isinstance(ended, RELEASING):
                release(ev.stream_id, event_time(ev))
            case FileCreated(manifest=pieces, upload_id=upload_id):
                add(ev.stream_id, pieces)
                if upload_id:
                    release(stream_id_for("uploads", upload_id), event_time(ev))
            case FileReplaced(manifest=pieces, upload_id=upload_id):
                # The old version's chunks, then the new one's (shared ones stay live).
                release(ev.stream_id, event_time(ev))
                add(ev.stream_id, pieces)
                if upload_id:
                    release(stream_id_for("uploads", upload_id), event_time(ev))
            # A fetch: only a cancel releases. A failed fetch may be retried (and would add
            # to a released stream), and a completed one's bytes may still be waiting for
            # their file; chunks dropped by a restart stay until then too.
            case FetchBytesAppended(pieces=pieces) | FetchSegmentBytesAppended(pieces=pieces):
                add(ev.stream_id, pieces)
            case FetchCancelled():
                release(ev.stream_id, event_time(ev))
            case FileDeleted():
                release(ev.stream_id, event_time(ev))
    return Effects(refs, releases)


async def _apply(conn: asyncpg.Connection, fx: Effects) -> None:
    # Stream releases first: they are for rows recorded before this page (the WHERE leaves
    # rows already released alone, keeping their earlier time). Then the page's own rows
    # with their final state, which overrides the release for a chunk re-added after it (a
    # row of the page that ends released was added in the page, so its release time is
    # the latest one: the grace counts from there).
    # The dict is already de-duplicated, which ON CONFLICT DO UPDATE requires within one
    # statement.
    if fx.releases:
        streams = list(fx.releases)
        await conn.execute(
            """
            UPDATE readmodel.chunk_refs r SET released_at = x.at
            FROM unnest($1::text[], $2::timestamptz[]) AS x(stream_id, at)
            WHERE r.stream_id = x.stream_id AND r.released_at IS NULL
            """,
            streams,
            [fx.releases[s] for s in streams],
        )
    if fx.refs:
        keys = list(fx.refs)
        await conn.execute(
            """
            INSERT INTO readmodel.chunk_refs (sha256, stream_id, size, released_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[])
            ON CONFLICT (sha256, stream_id) DO UPDATE SET released_at = EXCLUDED.released_at
            """,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [fx.refs[k][0] for k in keys],
            [fx.refs[k][1] for k in keys],
        )


async def catch_up(pool: asyncpg.Pool, store: EventStore, *, page: int = PAGE) -> int:
    """Apply every event after the checkpoint; return the position now reached.

    Each page commits together with the checkpoint (so a crash repeats nothing and skips
    nothing), under a row lock on the checkpoint, so two callers never apply a page twice."""
    async with pool.acquire() as conn:
        while True:
            async with conn.transaction():
                position = int(
                    await conn.fetchval(
                        "SELECT position FROM readmodel.chunk_refs_position WHERE id FOR UPDATE"
                    )
                )
                events = await store.read_all(position, limit=page)
                if not events:
                    return position
                await _apply(conn, effects(events))
                await conn.execute(
                    "UPDATE readmodel.chunk_refs_position SET position = $1, updated_at = now()"
                    " WHERE id",
                    events[-1].position,
                )


async def still_needed(
    conn: asyncpg.Connection | asyncpg.Pool, shas: list[str], released_after: datetime
) -> set[str]:
    """Those of `shas` with a live reference or a reference released after `released_after`."""
    rows = await conn.fetch(
        "SELECT DISTINCT sha256 FROM readmodel.chunk_refs WHERE sha256 = ANY($1::text[])"
        " AND (released_at IS NULL OR released_at > $2)",
        shas,
        released_after,
    )
    return {r["sha256"] for r in rows}


async def prune(conn: asyncpg.Connection | asyncpg.Pool, released_before: datetime) -> int:
    """Forget references released before `released_before`: past the grace they no longer
    keep anything alive, so they only cost space."""
    status = await conn.execute(
        "DELETE FROM readmodel.chunk_refs WHERE released_at IS NOT NULL AND released_at <= $1",
        released_before,
    )
    return int(status.split()[-1])


async def reset(conn: asyncpg.Connection) -> None:
    """Forget everything: the next `catch_up` replays the whole event store."""
    await conn.execute("DELETE FROM readmodel.chunk_refs")
    await conn.execute("UPDATE readmodel.chunk_refs_position SET position = 0, updated_at = now()")
