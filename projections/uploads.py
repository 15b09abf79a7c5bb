"""The uploads read model: one row per upload with its progress, plus upload usage per day.

The API lists uploads and shows progress from here instead of folding event streams per
request. Counters are increments (`bytes_received + size`), which is only correct because
`apply_event` guarantees each event is applied exactly once and in stream order.
"""

from __future__ import annotations

from typing import ClassVar

import asyncpg

from domain import uploads
from domain.events import RecordedEvent, event_time
from domain.kernel import Event
from domain.uploads import UploadStatus
from domain.uploads.events import (
    UploadAborted,
    UploadBytesAppended,
    UploadChunkStored,
    UploadCompleted,
    UploadExpired,
    UploadFailed,
    UploadInitiated,
    UploadLengthDeclared,
)
from projections.base import (
    Projection,
    as_uuid,
    bump_usage,
    counting_usage,
    reset_usage,
    utc_day,
)

# Each also counts its usage, for the owner the row holds (see counting_usage).
# Bytes move a live upload to IN_PROGRESS, or a partial one (tus concatenation) that now
# has them all to PARTIAL_COMPLETE, as domain.uploads.state's evolve does.
_BYTES_RECEIVED = counting_usage(
    """
    UPDATE readmodel.uploads SET
        chunks_received = chunks_received + $5,
        bytes_received = bytes_received + $2,
        status = CASE
            WHEN status NOT IN ('INITIATED', 'IN_PROGRESS') THEN status
            WHEN partial AND file_size = bytes_received + $2 THEN 'PARTIAL_COMPLETE'
            ELSE 'IN_PROGRESS' END,
        updated_at = $3,
        last_version = $4
    WHERE id = $1
    RETURNING owner
    """,
    "bytes_uploaded",
    day=6,
    delta=2,
)
_COMPLETED = counting_usage(
    "UPDATE readmodel.uploads SET status = 'COMPLETED', file_id = $2,"
    " completed_at = $3, updated_at = $3, last_version = $4"
    " WHERE id = $1 RETURNING owner",
    "uploads_completed",
    day=5,
    delta=6,
)


class UploadsProjection(Projection):
    name: ClassVar[str] = "uploads"
    aggregates: ClassVar[tuple[str, ...]] = (uploads.AGGREGATE.name,)
    tables: ClassVar[tuple[str, ...]] = ("readmodel.uploads",)

    async def reset(self, conn: asyncpg.Connection) -> None:
        await super().reset(conn)
        await reset_usage(conn, "uploads_started", "uploads_completed", "bytes_uploaded")

    async def apply(self, conn: asyncpg.Connection, ev: RecordedEvent) -> None:
        at = event_time(ev)
        upload_id = as_uuid(ev.aggregate_id)

        match ev.payload:
            case UploadInitiated() as e:
                # INITIATED, or PARTIAL_COMPLETE for an empty partial upload: the status
                # the aggregate starts in.
                first = uploads.evolve(None, e)
                await conn.execute(
                    """
                    INSERT INTO readmodel.uploads (
                        id, owner, file_name, file_size, chunk_size, total_chunks, content_type,
                        bucket, sha256, status, metadata, created_at, updated_at, last_version,
                        mode, partial, bytes_received, parts, headers, key)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $17, $10, $11, $11, $12,
                            $13, $14, $15, $16, $18, $19)
                    """,
                    upload_id,
                    e.owner,
                    e.file_name,
                    e.file_size,
                    e.chunk_size,
                    e.total_chunks,
                    e.content_type or "application/octet-stream",
                    e.bucket or "default",
                    e.sha256,
                    dict(e.metadata),
                    at,
                    ev.version,
                    e.mode or "chunks",
                    e.partial,
                    # A final (concatenated) upload starts with all its bytes: its parts' pieces.
                    sum(p.size for p in e.manifest),
                    # A final's parts: their bytes are its own (the quota counts them once).
                    [as_uuid(p) for p in e.parts],
                    (first.status if first is not None else UploadStatus.INITIATED).value,
                    # The object's stored headers (into a key); only this event sets them.
                    dict(e.headers),
                    # The object key it becomes (None: a plain file); only this event sets it.
                    e.key,
                )
                await bump_usage(conn, e.owner, utc_day(at), uploads_started=1)

            case UploadBytesAppended(size=size) | UploadChunkStored(size=size) as e:
                # Bytes arrived: a numbered chunk (native) or appended pieces (tus).
                await conn.execute(
                    _BYTES_RECEIVED,
                    upload_id,
                    size,
                    at,
                    ev.version,
                    1 if isinstance(e, UploadChunkStored) else 0,
                    utc_day(at),
                )

            case UploadLengthDeclared(file_size=file_size):
                # A partial upload whose length is declared at its offset is finished.
                await conn.execute(
                    "UPDATE readmodel.uploads SET file_size = $2, updated_at = $3,"
                    " last_version = $4, status = CASE"
                    " WHEN partial AND status IN ('INITIATED', 'IN_PROGRESS')"
                    " AND bytes_received = $2 THEN 'PARTIAL_COMPLETE' ELSE status END"
                    " WHERE id = $1",
                    upload_id,
                    file_size,
                    at,
                    ev.version,
                )

            case UploadCompleted(file_id=file_id):
                await conn.execute(
                    _COMPLETED,
                    upload_id,
                    as_uuid(file_id),
                    at,
                    ev.version,
                    utc_day(at),
                    1,
                )

            case UploadAborted() | UploadFailed() | UploadExpired() as e:
                await conn.execute(
                    "UPDATE readmodel.uploads SET status = $2, failure_reason = $3,"
                    " updated_at = $4, last_version = $5 WHERE id = $1",
                    upload_id,
                    _ENDS[type(e)].value,
                    e.reason if isinstance(e, UploadFailed) else None,
                    at,
                    ev.version,
                )

            case _:
                # An event type this code does not know yet (a newer producer): record that
                # the row has seen it and change nothing else; a rebuild after upgrading
                # picks it up.
                await conn.execute(
                    "UPDATE readmodel.uploads SET last_version = $2 WHERE id = $1",
                    upload_id,
                    ev.version,
                )


_ENDS: dict[type[Event], UploadStatus] = {
    UploadAborted: UploadStatus.ABORTED,
    UploadFailed: UploadStatus.FAILED,
    UploadExpired: UploadStatus.EXPIRED,
}
