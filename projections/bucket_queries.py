"""Read functions over the buckets read model and bucket usage, for the API.

A bucket's objects are the live files whose `bucket` is its name and whose owner is its
owner (files someone else labelled with the name are not in it). Usage is counted from
readmodel.files at read time (index files_bucket_owner_name_idx), so it can never drift
from what exists; it lags the log by the projector's bounded lag.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def bucket_dict(r: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {
        "name": r["name"],
        "owner": r["owner"],
        "public": r["public"],
        "description": r["description"],
        "created_at": _iso(r["created_at"]),
        "updated_at": _iso(r["updated_at"]),
    }


async def list_buckets(
    pool: asyncpg.Pool, owner: str | None, *, limit: int, after: str | None
) -> list[dict[str, Any]]:
    """Live buckets by name, after `after` (keyset paging); `owner=None`: every owner."""
    rows = await pool.fetch(
        "SELECT name, owner, public, description, created_at, updated_at"
        " FROM readmodel.buckets WHERE deleted_at IS NULL"
        " AND ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR name > $2)"
        # One collation for the order and the cursor comparison: nothing skipped or repeated.
        " ORDER BY name LIMIT $3",
        owner,
        after,
        limit,
    )
    return [bucket_dict(r) for r in rows]


async def bucket_usage(pool: asyncpg.Pool, name: str, owner: str) -> dict[str, int]:
    """Objects and bytes in bucket `name` of `owner`."""
    row = await pool.fetchrow(
        "SELECT count(*) AS objects, coalesce(sum(size), 0)::bigint AS bytes"
        " FROM readmodel.files WHERE bucket = $1 AND owner = $2 AND deleted_at IS NULL",
        name,
        owner,
    )
    assert row is not None
    return {"objects": int(row["objects"]), "bytes": int(row["bytes"])}


async def owner_usage(pool: asyncpg.Pool, owner: str) -> dict[str, int]:
    """Buckets, objects and bytes of every live bucket `owner` owns."""
    row = await pool.fetchrow(
        "SELECT coalesce(sum(buckets), 0)::bigint AS buckets,"
        " coalesce(sum(objects), 0)::bigint AS objects, coalesce(sum(bytes), 0)::bigint AS bytes"
        " FROM readmodel.bucket_usage_by_owner WHERE owner = $1",
        owner,
    )
    assert row is not None
    return {k: int(row[k]) for k in ("buckets", "objects", "bytes")}


async def object_ids(
    pool: asyncpg.Pool, name: str, owner: str, limit: int, after: str | None = None
) -> list[str]:
    """Ids of live objects of bucket `name`, in id order after `after` (keyset paging)."""
    # Two statements, not `($4 IS NULL OR id > $4)`: the generic plan PostgreSQL settles
    # on for a prepared statement cannot start an index scan at such a bound, so every page
    # of a large bucket's force delete would read from the first id again.
    query = (
        "SELECT id FROM readmodel.files WHERE bucket = $1 AND owner = $2"
        " AND deleted_at IS NULL {} ORDER BY id LIMIT $3"
    )
    if after is None:
        rows = await pool.fetch(query.format(""), name, owner, limit)
    else:
        rows = await pool.fetch(query.format("AND id > $4"), name, owner, limit, after)
    return [str(r["id"]) for r in rows]
