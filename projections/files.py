"""The files read model: one row per file (deleted ones kept, marked), plus file usage per day.

A row describes the file's current version, including its stored HTTP headers (`headers`,
set only by FileCreated and FileReplaced, as `metadata` is set by those and FileUpdated),
so the listings show what the file's own answer shows without loading each aggregate.

Listing, filtering and the "known sha256" lookup read from here; the manifest itself is not
copied (only its length): serving loads the file aggregate, which is the authority.
"""

from __future__ import annotations

from typing import ClassVar

import asyncpg

from domain import files
from domain.events import RecordedEvent, event_time
from domain.files.events import FileCreated, FileDeleted, FileReplaced, FileUpdated
from projections.base import (
    Projection,
    as_uuid,
    bump_usage,
    counting_usage,
    reset_usage,
    utc_day,
)

# Also counts the deletion in usage, for the owner the row holds (see counting_usage).
_DELETED = counting_usage(
    "UPDATE readmodel.files SET deleted_at = $2, updated_at = $2,"
    " last_version = $3 WHERE id = $1 RETURNING owner",
    "files_deleted",
    day=4,
    delta=5,
)


class FilesProjection(Projection):
    name: ClassVar[str] = "files"
    aggregates: ClassVar[tuple[str, ...]] = (files.AGGREGATE.name,)
    tables: ClassVar[tuple[str, ...]] = ("readmodel.files",)

    async def reset(self, conn: asyncpg.Connection) -> None:
        await super().reset(conn)
        await reset_usage(conn, "files_created", "files_deleted")

    async def apply(self, conn: asyncpg.Connection, ev: RecordedEvent) -> None:
        at = event_time(ev)
        file_id = as_uuid(ev.aggregate_id)

        match ev.payload:
            case FileCreated() as e:
                # An upsert: an object's stream (id derived from bucket and key) is created
                # again after a delete; the row then describes the new object.
                await conn.execute(
                    """
                    INSERT INTO readmodel.files (
                        id, owner, name, size, content_type, sha256, bucket, metadata, upload_id,
                        chunk_count, created_at, updated_at, last_version, key, headers)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14)
                    ON CONFLICT (id) DO UPDATE SET
                        owner = EXCLUDED.owner, name = EXCLUDED.name, size = EXCLUDED.size,
                        content_type = EXCLUDED.content_type, sha256 = EXCLUDED.sha256,
                        bucket = EXCLUDED.bucket, metadata = EXCLUDED.metadata,
                        headers = EXCLUDED.headers,
                        upload_id = EXCLUDED.upload_id, chunk_count = EXCLUDED.chunk_count,
                        created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
                        last_version = EXCLUDED.last_version, key = EXCLUDED.key,
                        deleted_at = NULL
                    """,
                    file_id,
                    e.owner,
                    e.name,
                    e.size,
                    e.content_type,
                    e.sha256,
                    e.bucket or "default",
                    dict(e.metadata),
                    as_uuid(e.upload_id) if e.upload_id else None,
                    len(e.manifest),
                    at,
                    ev.version,
                    e.key,
                    dict(e.headers),
                )
                await bump_usage(conn, e.owner, utc_day(at), files_created=1)

            case FileReplaced() as e:
                # An object's new version: same row, new content; created_at is the version's.
                await conn.execute(
                    "UPDATE readmodel.files SET owner = $2, name = $3, size = $4,"
                    " content_type = $5, sha256 = $6, metadata = $7, upload_id = $8,"
                    " chunk_count = $9, created_at = $10, updated_at = $10, last_version = $11,"
                    " headers = $12, deleted_at = NULL WHERE id = $1",
                    file_id,
                    e.owner,
                    e.name,
                    e.size,
                    e.content_type,
                    e.sha256,
                    dict(e.metadata),
                    as_uuid(e.upload_id) if e.upload_id else None,
                    len(e.manifest),
                    at,
                    ev.version,
                    dict(e.headers),  # the new version's: none if its PUT sent none
                )

            case FileDeleted():
                await conn.execute(
                    _DELETED,
                    file_id,
                    at,
                    ev.version,
                    utc_day(at),
                    1,
                )

            case FileUpdated() as e:
                # A rename, move or metadata change: the version's stored headers stay.
                await conn.execute(
                    "UPDATE readmodel.files SET name = $2, bucket = $3, metadata = $4,"
                    " updated_at = $5, last_version = $6 WHERE id = $1",
                    file_id,
                    e.name,
                    e.bucket,
                    dict(e.metadata),
                    at,
                    ev.version,
                )

            case _:
                # An event type this code does not know yet (a newer producer): record that
                # the row has seen it and change nothing else; a rebuild after upgrading
                # picks it up.
                await conn.execute(
                    "UPDATE readmodel.files SET last_version = $2 WHERE id = $1",
                    file_id,
                    ev.version,
                )
