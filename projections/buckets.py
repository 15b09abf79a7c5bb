"""The buckets read model: one row per bucket name (deleted ones kept, marked).

Listing buckets reads from here; a single bucket's settings come from its aggregate (the
authority, consistent at once), its usage from `bucket_queries` over readmodel.files.
"""

from __future__ import annotations

from typing import ClassVar

import asyncpg

from domain import buckets
from domain.buckets.events import BucketCreated, BucketDeleted, BucketUpdated
from domain.events import RecordedEvent, event_time
from projections.base import Projection


class BucketsProjection(Projection):
    name: ClassVar[str] = "buckets"
    aggregates: ClassVar[tuple[str, ...]] = (buckets.AGGREGATE.name,)
    tables: ClassVar[tuple[str, ...]] = ("readmodel.buckets",)

    async def apply(self, conn: asyncpg.Connection, ev: RecordedEvent) -> None:
        at = event_time(ev)
        name = ev.aggregate_id
        match ev.payload:
            case BucketCreated() as e:
                # A name deleted and created again reuses its row: the new incarnation.
                await conn.execute(
                    """
                    INSERT INTO readmodel.buckets (
                        name, owner, public, description, created_at, updated_at,
                        deleted_at, last_version)
                    VALUES ($1, $2, $3, $4, $5, $5, NULL, $6)
                    ON CONFLICT (name) DO UPDATE SET
                        owner = excluded.owner, public = excluded.public,
                        description = excluded.description, created_at = excluded.created_at,
                        updated_at = excluded.updated_at, deleted_at = NULL,
                        last_version = excluded.last_version
                    """,
                    name,
                    e.owner,
                    e.public,
                    e.description,
                    at,
                    ev.version,
                )
            case BucketUpdated() as e:
                await conn.execute(
                    "UPDATE readmodel.buckets SET public = $2, description = $3,"
                    " updated_at = $4, last_version = $5 WHERE name = $1",
                    name,
                    e.public,
                    e.description,
                    at,
                    ev.version,
                )
            case BucketDeleted():
                await conn.execute(
                    "UPDATE readmodel.buckets SET deleted_at = $2, updated_at = $2,"
                    " last_version = $3 WHERE name = $1",
                    name,
                    at,
                    ev.version,
                )
            case _:
                # An event type this code does not know yet (a newer producer): note that
                # the row has seen it; a rebuild after upgrading picks it up.
                await conn.execute(
                    "UPDATE readmodel.buckets SET last_version = $2 WHERE name = $1",
                    name,
                    ev.version,
                )
