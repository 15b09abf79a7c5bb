"""The fetches read model: one row per URL fetch with its state and progress.

The API lists fetches and shows progress from here, the POST finds an owner's newest fetch
of a URL here, and the fetch workers find runnable fetches here. Byte counts are
increments, correct because `apply_event` applies each event exactly once, in order.
"""

from __future__ import annotations

from typing import ClassVar

import asyncpg

from bus.store.pickup import FETCHES_CHANGED
from domain import fetches
from domain.events import RecordedEvent, event_time
from domain.fetches import FetchStatus
from domain.fetches.events import (
    FetchAttemptFailed,
    FetchBytesAppended,
    FetchCancelled,
    FetchCompleted,
    FetchFailed,
    FetchPaused,
    FetchRequested,
    FetchResponseReceived,
    FetchResumed,
    FetchRetried,
    FetchSegmentBytesAppended,
    FetchStarted,
)
from projections.base import Projection, as_uuid

_STATUS = {
    FetchPaused.type: FetchStatus.PAUSED,
    FetchResumed.type: FetchStatus.PENDING,
    FetchCancelled.type: FetchStatus.CANCELLED,
    FetchRetried.type: FetchStatus.PENDING,
}


class FetchesProjection(Projection):
    name: ClassVar[str] = "fetches"
    aggregates: ClassVar[tuple[str, ...]] = (fetches.AGGREGATE.name,)
    tables: ClassVar[tuple[str, ...]] = ("readmodel.fetches",)
    announces: ClassVar[str | None] = FETCHES_CHANGED  # the fetch workers claim from it

    async def apply(self, conn: asyncpg.Connection, ev: RecordedEvent) -> None:
        at = event_time(ev)
        fid = as_uuid(ev.aggregate_id)
        d = ev.data
        if ev.type == FetchRequested.type:
            await conn.execute(
                """
                INSERT INTO readmodel.fetches (id, owner, url, generation, bucket, key, sha256,
                    status, created_at, updated_at, last_version)
                VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING', $8, $8, $9)
                """,
                fid,
                str(d["owner"]),
                str(d["url"]),
                int(d.get("generation") or 0),
                str(d.get("bucket") or "default"),
                d.get("key"),
                d.get("sha256"),
                at,
                ev.version,
            )
            return
        if ev.type == FetchStarted.type:
            await conn.execute(
                "UPDATE readmodel.fetches SET status = 'IN_PROGRESS', attempts = $2,"
                " run_started_at = $3, run_start_bytes = bytes, updated_at = $3,"
                " last_version = $4 WHERE id = $1",
                fid,
                int(d["attempt"]),
                at,
                ev.version,
            )
            return
        if ev.type == FetchResponseReceived.type:
            restart = bool(d.get("restart"))
            await conn.execute(
                "UPDATE readmodel.fetches SET etag = $2, last_modified = $3, total = $4,"
                " content_type = $5, file_name = $6,"
                " bytes = CASE WHEN $7 THEN 0 ELSE bytes END,"
                " run_start_bytes = CASE WHEN $7 THEN 0 ELSE run_start_bytes END,"
                " run_started_at = CASE WHEN $7 THEN $8 ELSE run_started_at END,"
                " updated_at = $8, last_version = $9 WHERE id = $1",
                fid,
                d.get("etag"),
                d.get("last_modified"),
                d.get("total"),
                d.get("content_type"),
                d.get("file_name"),
                restart,
                at,
                ev.version,
            )
            return
        if ev.type in (FetchBytesAppended.type, FetchSegmentBytesAppended.type):
            await conn.execute(
                "UPDATE readmodel.fetches SET bytes = bytes + $2, updated_at = $3,"
                " last_version = $4 WHERE id = $1",
                fid,
                int(d["size"]),
                at,
                ev.version,
            )
            return
        if ev.type in (FetchAttemptFailed.type, FetchFailed.type):
            status = "FAILED" if ev.type == FetchFailed.type else None
            await conn.execute(
                "UPDATE readmodel.fetches SET last_error = $2, status = coalesce($3, status),"
                " updated_at = $4, last_version = $5 WHERE id = $1",
                fid,
                str(d["error"]),
                status,
                at,
                ev.version,
            )
            return
        if ev.type == FetchCompleted.type:
            await conn.execute(
                "UPDATE readmodel.fetches SET status = 'COMPLETED', file_id = $2, sha256 ="
                " coalesce(sha256, $3), completed_at = $4, updated_at = $4, last_version = $5,"
                " total = $6 WHERE id = $1",
                fid,
                as_uuid(d["file_id"]),
                str(d["sha256"]),
                at,
                ev.version,
                int(d["size"]),  # the total of a body that announced none (as in the state)
            )
            return
        status = _STATUS.get(ev.type)
        if status is not None:
            await conn.execute(
                "UPDATE readmodel.fetches SET status = $2, updated_at = $3, last_version = $4,"
                " attempts = CASE WHEN $5 THEN 0 ELSE attempts END,"
                " last_error = CASE WHEN $5 THEN NULL ELSE last_error END WHERE id = $1",
                fid,
                status.value,
                at,
                ev.version,
                ev.type == FetchRetried.type,
            )
            return
        await conn.execute(
            "UPDATE readmodel.fetches SET last_version = $2 WHERE id = $1", fid, ev.version
        )
