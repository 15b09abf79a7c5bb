"""Reads of the fetches read model for the API: the newest fetch of a URL, one row, pages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from projections.queries import _check_paging, _order_by, _page, _Where

SORTS = ("created_at", "updated_at", "url", "bytes", "status")
_COLUMNS = (
    "id, url, status, bytes, total, attempts, last_error, etag, last_modified, content_type,"
    " file_name, bucket, key, sha256, file_id, created_at, updated_at, completed_at"
)


async def latest(
    pool: asyncpg.Pool, owner: str, url: str, bucket: str | None = None, key: str | None = None
) -> dict[str, Any] | None:
    """The newest generation of `owner`'s fetch of `url` (normalised), if any: of the fetches
    into no key, or with `key`, of those into that bucket and key (see policies.fetch_id)."""
    if key is None:
        r = await pool.fetchrow(
            "SELECT id, generation, status, completed_at FROM readmodel.fetches"
            " WHERE owner = $1 AND url = $2 AND key IS NULL ORDER BY generation DESC LIMIT 1",
            owner,
            url,
        )
    else:
        r = await pool.fetchrow(
            "SELECT id, generation, status, completed_at FROM readmodel.fetches"
            " WHERE owner = $1 AND url = $2 AND bucket = $3 AND key = $4"
            " ORDER BY generation DESC LIMIT 1",
            owner,
            url,
            bucket,
            key,
        )
    return dict(r) if r else None


async def completed_since(
    pool: asyncpg.Pool, owner: str, url: str, since: datetime, other_than: str
) -> list[str]:
    """Ids of `owner`'s fetches of `url` (normalised) completed after `since`, into any bucket
    or key, newest first, `other_than` left out: what a first fetch of the URL may reuse."""
    rows = await pool.fetch(
        "SELECT id FROM readmodel.fetches WHERE owner = $1 AND url = $2 AND status = 'COMPLETED'"
        " AND completed_at > $3 AND id <> $4 ORDER BY completed_at DESC LIMIT 5",
        owner,
        url,
        since,
        uuid.UUID(other_than),
    )
    return [str(r["id"]) for r in rows]


async def get(pool: asyncpg.Pool, fetch_id: str) -> dict[str, Any] | None:
    r = await pool.fetchrow(
        "SELECT run_started_at, run_start_bytes, updated_at FROM readmodel.fetches WHERE id = $1",
        uuid.UUID(fetch_id),
    )
    return dict(r) if r else None


def progress(done_bytes: int, total: int | None, completed: bool) -> float | None:
    """A fetch's progress in percent (0-100), one rule for the list and for one fetch
    (api/routes/fetches.py): None while the size is unknown; an announced empty body
    (total 0) is 0 until it completes (the list answered null for it)."""
    if completed:
        return 100.0
    if total is None:
        return None
    return round(min(100.0, 100.0 * done_bytes / total), 2) if total else 0.0


def _row(r: asyncpg.Record) -> dict[str, Any]:
    out = dict(r)
    for k, v in out.items():
        if isinstance(v, datetime):
            out[k] = v.isoformat()
        elif isinstance(v, uuid.UUID):
            out[k] = str(v)
    out["progress"] = progress(out["bytes"], out["total"], out["status"] == "COMPLETED")
    return out


async def page(
    pool: asyncpg.Pool,
    owner: str,
    *,
    url: str | None,
    status: str | None,
    sort: str,
    order: str,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    _check_paging(limit, offset)
    order_by = _order_by(sort, order, SORTS)
    where = _Where()
    where.add("owner = ?", owner)
    if url is not None:
        where.add("url = ?", url)
    if status is not None:
        where.add("status = ?", status)
    rows, total = await _page(pool, "readmodel.fetches", _COLUMNS, where, order_by, limit, offset)
    return [_row(r) for r in rows], total
