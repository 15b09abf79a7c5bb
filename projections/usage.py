"""What counts against an owner's storage quota, read from the read models.

Shared by the API (api/limits.py, before an upload), the task workers (before a task
creates a file) and the fetch worker (before and while a body comes in): one definition of
"used", and one rule for going over (`over_quota`)."""

from __future__ import annotations

import uuid

from bus.store.eventstore import PostgresEventStore
from domain.uploads import ACTIVE
from domain.uploads.events import UploadInitiated

QUOTA_EXCEEDED = "the storage quota would be exceeded"


def over_quota(quota: int, used: int, requested: int) -> dict[str, int] | None:
    """The details of a refusal ({quota, used, requested}) when `requested` more bytes take
    an owner who used `used` past `quota` (0: no quota), else None: one rule for uploads
    (api/limits.py), tasks (handlers/tasks/fileops.py) and fetches (handlers/fetch_run.py)."""
    if quota > 0 and used + requested > quota:
        return {"quota": quota, "used": used, "requested": requested}
    return None


# How far back in the event store to look for uploads the projection has not seen yet.
UNPROJECTED_TAIL = 1000


async def storage_used(
    store: PostgresEventStore, owner: str, exclude_upload: str | None = None
) -> int:
    """Bytes counted against `owner`'s quota, leaving out one upload (and its file)."""
    excluded = uuid.UUID(exclude_upload) if exclude_upload else None
    # Uploads the projection may not have seen yet: the newest initiations, read through
    # the event store (so through the upcasters, like every other reader of events).
    recent = {
        uuid.UUID(e.upload_id): e.file_size or 0
        for ev in await store.read_latest(UploadInitiated.type, UNPROJECTED_TAIL)
        if ev.owner == owner and isinstance(e := ev.payload, UploadInitiated)
    }
    if excluded is not None:
        recent.pop(excluded, None)
    active = [s.value for s in ACTIVE]
    # An upload counts until its file exists (whichever read model is ahead), so around a
    # completion the bytes are counted exactly once.
    used = await store.pool.fetchval(
        """
        SELECT
          (SELECT coalesce(sum(size), 0) FROM readmodel.files
            WHERE owner = $1 AND deleted_at IS NULL AND upload_id IS DISTINCT FROM $2)
        + (SELECT coalesce(sum(coalesce(u.file_size, u.bytes_received)), 0)
             FROM readmodel.uploads u
            WHERE u.owner = $1 AND u.id IS DISTINCT FROM $2
              AND (u.status = ANY($3::text[])
                   OR (u.status = 'COMPLETED' AND u.updated_at > now() - interval '1 hour'))
              AND NOT EXISTS (SELECT 1 FROM readmodel.files f WHERE f.upload_id = u.id))
        + (SELECT coalesce(sum(t.size), 0)
             FROM unnest($4::uuid[], $5::bigint[]) AS t(id, size)
            WHERE NOT EXISTS (SELECT 1 FROM readmodel.uploads u WHERE u.id = t.id)
              AND NOT EXISTS (SELECT 1 FROM readmodel.files f WHERE f.upload_id = t.id))
        """,
        owner,
        excluded,
        active,
        list(recent),
        list(recent.values()),
    )
    return int(used or 0)
