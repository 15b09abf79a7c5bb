"""Reads of the tasks read model: listing, stats, and the file lookups a task needs.

Kept apart from projections/queries.py (uploads and files) so each module stays one concern.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from projections.queries import _check_paging, _order_by, _page, _Where, escape_like
from projections.tasks import FORGET_FINISHED

TASK_SORTS = ("created_at", "updated_at", "priority", "status", "type")
STATUSES = ("PENDING", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED")


def task_row(r: asyncpg.Record) -> dict[str, Any]:
    items_total, items_done = int(r["items_total"]), int(r["items_done"])
    bytes_total, bytes_done = int(r["bytes_total"]), int(r["bytes_done"])
    if r["status"] == "COMPLETED":
        percent = 100.0
    elif bytes_total > 0:
        percent = round(min(100.0, 100.0 * bytes_done / bytes_total), 2)
    else:
        percent = round(min(100.0, 100.0 * items_done / items_total), 2) if items_total else 0.0
    return {
        "id": str(r["id"]),
        "type": r["type"],
        "status": r["status"],
        "priority": r["priority"],
        "params": r["params"],
        "progress": {
            "items_done": items_done,
            "items_total": items_total,
            "items_failed": int(r["items_failed"]),
            "bytes_done": bytes_done,
            "bytes_total": bytes_total,
            "percent": percent,
        },
        "result_file_ids": list(r["result_file_ids"] or []),
        "error": r["error"],
        "attempts": r["attempts"],
        "created_at": r["created_at"].isoformat(),
        "updated_at": r["updated_at"].isoformat(),
        "started_at": r["started_at"].isoformat() if r["started_at"] else None,
        "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None,
    }


async def list_tasks(
    pool: asyncpg.Pool,
    owner: str | None,
    *,
    type: str | None = None,
    status: str | None = None,
    sort: str = "created_at",
    order: str = "desc",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    # Through the shared paging (projections/queries.py): a whitelisted ORDER BY, filter
    # values as parameters (a NUL refused), and page and total read in one snapshot, so
    # X-Total-Count agrees with the rows (two statements on their own could straddle a
    # commit of the projector).
    order_by = _order_by(sort, order, TASK_SORTS)
    _check_paging(limit, offset)
    where = _Where()
    for col, value in (("owner", owner), ("type", type), ("status", status)):
        if value is not None:
            where.add(f"{col} = ?", value)
    rows, total = await _page(pool, "readmodel.tasks", "*", where, order_by, limit, offset)
    return [task_row(r) for r in rows], int(total)


async def task_stats(pool: asyncpg.Pool, owner: str | None) -> dict[str, Any]:
    """Counts by type and status, bytes processed, and the last day's activity."""
    cond, args = ("WHERE owner = $1", [owner]) if owner is not None else ("", [])
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type, status, count(*) AS n, coalesce(sum(bytes_done), 0) AS bytes,"
            " coalesce(sum(items_done), 0) AS items"
            f" FROM readmodel.tasks {cond} GROUP BY type, status",
            *args,
        )
        recent = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE created_at > now() - interval '24 hours') AS created,"
            " count(*) FILTER (WHERE finished_at > now() - interval '24 hours') AS finished,"
            " max(updated_at) AS last"
            f" FROM readmodel.tasks {cond}",
            *args,
        )
    by_status: dict[str, int] = dict.fromkeys(STATUSES, 0)
    by_type: dict[str, dict[str, int]] = {}
    total_bytes = items = 0
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + int(r["n"])
        by_type.setdefault(r["type"], {})[r["status"]] = int(r["n"])
        total_bytes += int(r["bytes"])
        items += int(r["items"])
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_type": by_type,
        "bytes_processed": total_bytes,
        "items_processed": items,
        "recent": {
            "created_last_24h": int(recent["created"] or 0),
            "finished_last_24h": int(recent["finished"] or 0),
            "last_activity_at": recent["last"].isoformat() if recent["last"] else None,
        },
    }


async def files_by_prefix(
    pool: asyncpg.Pool,
    owner: str,
    bucket: str | None,
    prefix: str,
    limit: int,
    *,
    created_before: datetime | None = None,
) -> list[tuple[str, int]]:
    """(id, size) of the owner's live files in `bucket` (None: any bucket) whose name (an
    object's: key) starts with `prefix` and, given `created_before`, that were created before it; oldest
    first, at most `limit` (the caller asks for one more than it allows)."""
    # An object matches by its key (a plain file by its name).
    conds = ["owner = $1", "deleted_at IS NULL", "coalesce(key, name) LIKE $2 ESCAPE '\\'"]
    args: list[Any] = [owner, escape_like(prefix) + "%"]
    if bucket is not None:
        args.append(bucket)
        conds.append(f"bucket = ${len(args)}")
    if created_before is not None:
        args.append(created_before)
        conds.append(f"created_at < ${len(args)}")
    args.append(limit)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT id, size FROM readmodel.files WHERE {' AND '.join(conds)}"
            f" ORDER BY created_at, id LIMIT ${len(args)}",
            *args,
        )
    return [(str(r["id"]), int(r["size"])) for r in rows]


async def live_names(
    pool: asyncpg.Pool, owner: str, bucket: str, names: list[str]
) -> dict[str, list[str]]:
    """The ids of the owner's live files in `bucket` named each of `names` (a name absent
    from the answer is free)."""
    out: dict[str, list[str]] = {}
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, name FROM readmodel.files WHERE owner = $1 AND bucket = $2"
            " AND deleted_at IS NULL AND name = ANY($3::text[]) ORDER BY created_at, id",
            owner,
            bucket,
            sorted(set(names)),
        )
    for r in rows:
        out.setdefault(r["name"], []).append(str(r["id"]))
    return out


async def delete_expired(pool: asyncpg.Pool, retention_seconds: float) -> int:
    """Forget finished tasks older than the retention (rows and leases); return how many."""
    async with pool.acquire() as conn:
        status = await conn.execute(FORGET_FINISHED, retention_seconds)
    return int(status.split()[-1])


async def copy_collisions(
    pool: asyncpg.Pool, owner: str, sources: list[str], bucket: str, prefix: str
) -> dict[str, list[str]]:
    """For copy/move: source id -> ids of the owner's live files in `bucket` already named
    `prefix` + the source's name (what copying it there would collide with)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT s.id AS source, t.id AS target FROM readmodel.files s"
            " JOIN readmodel.files t ON t.owner = s.owner AND t.bucket = $3"
            " AND t.name = $4 || s.name AND t.deleted_at IS NULL"
            " WHERE s.owner = $1 AND s.id = ANY($2::uuid[]) ORDER BY t.created_at, t.id",
            owner,
            sources,
            bucket,
            prefix,
        )
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(str(r["source"]), []).append(str(r["target"]))
    return out


async def file_names(pool: asyncpg.Pool, ids: list[str]) -> list[str]:
    """The names of these files (in no particular order)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT name FROM readmodel.files WHERE id = ANY($1::uuid[])", ids)
    return [str(r["name"]) for r in rows]


async def file_keys(
    pool: asyncpg.Pool, owner: str, ids: list[str]
) -> tuple[dict[str, str], set[str]]:
    """(id -> key of the objects among the owner's files `ids`, the ids the files read model
    has at all), deleted ones included: a copy or move plans where each object goes."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, key FROM readmodel.files WHERE owner = $1 AND id = ANY($2::uuid[])",
            owner,
            ids,
        )
    keys = {str(r["id"]): str(r["key"]) for r in rows if r["key"] is not None}
    return keys, {str(r["id"]) for r in rows}


async def live_keys(pool: asyncpg.Pool, bucket: str, keys: list[str]) -> dict[str, str]:
    """The live objects of `bucket` at these keys: key -> the task that extracted it
    (metadata `extracted_by`), or "" for one written otherwise."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT key, coalesce(metadata->>'extracted_by', '') AS by FROM readmodel.files"
            " WHERE bucket = $1 AND key = ANY($2::text[]) AND deleted_at IS NULL",
            bucket,
            sorted(set(keys)),
        )
    return {str(r["key"]): str(r["by"]) for r in rows}
