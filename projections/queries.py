"""Read functions over the read models, for the API: plain JSON-friendly dicts out.

Kept next to the projections that write these tables so the SQL and the schema change
together. Every value reaches SQL as a parameter; the only interpolated fragments (sort
column and direction) come from fixed whitelists. `owner=None` means an admin caller: no
owner filter. Invalid arguments raise ValueError (the API maps it to 400).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from domain.uploads import UploadStatus

MAX_LIMIT = 1000

UPLOAD_SORTS = ("created_at", "updated_at", "file_name", "file_size")
FILE_SORTS = ("created_at", "updated_at", "name", "size")
ORDERS = ("asc", "desc")

_UPLOAD_COLUMNS = (
    "id, owner, file_name, file_size, chunk_size, total_chunks, chunks_received,"
    " bytes_received, content_type, bucket, sha256, status, file_id, metadata, failure_reason,"
    " created_at, updated_at, completed_at, mode, partial, headers, key"
)
_FILE_COLUMNS = (
    "id, owner, name, size, content_type, sha256, bucket, metadata, upload_id, chunk_count,"
    " created_at, updated_at, key, headers"
)


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def _str(v: Any) -> str | None:
    return str(v) if v is not None else None


def _uuid_or_none(value: str | uuid.UUID) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None


def progress_percent(size: int | None, received: int, completed: bool) -> float:
    """Progress on the one scale used everywhere (REST and events): percent, 0-100."""
    if size is None:
        # A deferred length (tus): no fraction to give until the upload completes.
        return 100.0 if completed else 0.0
    # An empty file has nothing left to receive.
    return round(min(received / size, 1.0) * 100, 2) if size else 100.0


def _upload_dict(r: asyncpg.Record) -> dict[str, Any]:
    size = r["file_size"]
    return {
        "id": str(r["id"]),
        "owner": r["owner"],
        "file_name": r["file_name"],
        "file_size": size,
        "chunk_size": r["chunk_size"],
        "total_chunks": r["total_chunks"],
        "chunks_received": r["chunks_received"],
        "bytes_received": r["bytes_received"],
        "progress": progress_percent(
            size, r["bytes_received"], r["status"] == UploadStatus.COMPLETED.value
        ),
        "status": r["status"],
        "mode": r["mode"],
        "partial": r["partial"],
        "content_type": r["content_type"],
        "bucket": r["bucket"],
        "key": r["key"],
        "sha256": r["sha256"],
        "metadata": r["metadata"],
        "headers": r["headers"],
        "file_id": _str(r["file_id"]),
        "failure_reason": r["failure_reason"],
        "created_at": _iso(r["created_at"]),
        "updated_at": _iso(r["updated_at"]),
        "completed_at": _iso(r["completed_at"]),
    }


def _file_dict(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "owner": r["owner"],
        "name": r["name"],
        "size": r["size"],
        "content_type": r["content_type"],
        "sha256": r["sha256"],
        "bucket": r["bucket"],
        "metadata": r["metadata"],
        "upload_id": _str(r["upload_id"]),
        "chunk_count": r["chunk_count"],
        "created_at": _iso(r["created_at"]),
        "updated_at": _iso(r["updated_at"]),
        "key": r["key"],
        # The version's stored HTTP headers by lower-case name ({} when none): what the
        # file's own answer (GET /v1/files/{id}, an object's JSON) shows.
        "headers": r["headers"],
    }


def _order_by(sort: str, order: str, allowed: tuple[str, ...]) -> str:
    if sort not in allowed:
        raise ValueError(f"sort must be one of {', '.join(allowed)}")
    if order not in ORDERS:
        raise ValueError("order must be asc or desc")
    # `id` breaks ties so that pages neither repeat nor skip rows.
    return f"ORDER BY {sort} {order}, id {order}"


def _check_paging(limit: int, offset: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer in [1, {MAX_LIMIT}]")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError("offset must be a non-negative integer")


class _Where:
    """Accumulates parameterised conditions."""

    def __init__(self) -> None:
        self.conds: list[str] = []
        self.args: list[Any] = []

    def add(self, cond: str, value: Any) -> None:
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL's text holds no NUL: the driver would fail (a 500); a filter value
            # is the client's, so it is a bad query (400 invalid_query, api/paging.py).
            raise ValueError("a filter value holds a NUL character")
        self.args.append(value)
        self.conds.append(cond.replace("?", f"${len(self.args)}"))

    def sql(self) -> str:
        return f"WHERE {' AND '.join(self.conds)}" if self.conds else ""


async def _page(
    pool: asyncpg.Pool,
    table: str,
    columns: str,
    where: _Where,
    order_by: str,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    n = len(where.args)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # One snapshot for page and total, so they agree with each other.
        rows = await conn.fetch(
            f"SELECT {columns} FROM {table} {where.sql()} {order_by}"
            f" LIMIT ${n + 1} OFFSET ${n + 2}",
            *where.args,
            limit,
            offset,
        )
        total = await conn.fetchval(f"SELECT count(*) FROM {table} {where.sql()}", *where.args)
    return list(rows), int(total)


# ---- uploads ---------------------------------------------------------------------------


async def get_upload(
    pool: asyncpg.Pool, upload_id: str | uuid.UUID, owner: str | None
) -> dict[str, Any] | None:
    """One upload, or None if it does not exist or belongs to someone else."""
    uid = _uuid_or_none(upload_id)
    if uid is None:
        return None
    where = _Where()
    where.add("id = ?", uid)
    if owner is not None:
        where.add("owner = ?", owner)
    async with pool.acquire() as conn:
        r = await conn.fetchrow(
            f"SELECT {_UPLOAD_COLUMNS} FROM readmodel.uploads {where.sql()}", *where.args
        )
    return _upload_dict(r) if r is not None else None


async def list_uploads(
    pool: asyncpg.Pool,
    owner: str | None,
    *,
    status: str | None = None,
    sort: str = "created_at",
    order: str = "desc",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A page of uploads and the total matching; `status` is case-insensitive."""
    order_by = _order_by(sort, order, UPLOAD_SORTS)
    _check_paging(limit, offset)
    where = _Where()
    if owner is not None:
        where.add("owner = ?", owner)
    if status is not None:
        try:
            where.add("status = ?", UploadStatus(status.upper()).value)
        except ValueError:
            raise ValueError(
                f"status must be one of {', '.join(s.value for s in UploadStatus)}"
            ) from None
    rows, total = await _page(
        pool, "readmodel.uploads", _UPLOAD_COLUMNS, where, order_by, limit, offset
    )
    return [_upload_dict(r) for r in rows], total


async def upload_stats(
    pool: asyncpg.Pool, owner: str | None, *, recent_days: int = 7, now: datetime | None = None
) -> dict[str, Any]:
    """Counts by status, bytes, and daily activity over the last `recent_days` UTC days."""
    if not 1 <= recent_days <= 366:
        raise ValueError("recent_days must be in [1, 366]")
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    since = today - timedelta(days=recent_days - 1)
    where = _Where()
    if owner is not None:
        where.add("owner = ?", owner)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        counts = await conn.fetch(
            # A tus concatenation (mode 'final') holds its parts' bytes, received (and
            # counted) by the parts: counted again, they were counted twice.
            "SELECT status, count(*) AS n, coalesce(sum(bytes_received)"
            " FILTER (WHERE mode IS DISTINCT FROM 'final'), 0)::bigint AS received,"
            " coalesce(sum(file_size), 0)::bigint AS size, max(updated_at) AS last,"
            # Uploads whose length is deferred (tus) have nothing known to be pending.
            " coalesce(sum(file_size - bytes_received), 0)::bigint AS pending"
            f" FROM readmodel.uploads {where.sql()} GROUP BY status",
            *where.args,
        )
        where.add("day >= ?", since)
        days = await conn.fetch(
            "SELECT day, sum(uploads_started)::bigint AS started,"
            " sum(uploads_completed)::bigint AS completed,"
            " sum(bytes_uploaded)::bigint AS bytes"
            f" FROM readmodel.usage_daily {where.sql()} GROUP BY day",
            *where.args,
        )
    by_status = {s.value: 0 for s in UploadStatus}
    for r in counts:
        by_status[r["status"]] = r["n"]
    per_day: dict[date, asyncpg.Record] = {r["day"]: r for r in days}
    recent = []
    for i in range(recent_days):
        day = since + timedelta(days=i)
        r = per_day.get(day)
        recent.append(
            {
                "day": day.isoformat(),
                "uploads_started": r["started"] if r else 0,
                "uploads_completed": r["completed"] if r else 0,
                "bytes_uploaded": r["bytes"] if r else 0,
            }
        )
    lasts = [r["last"] for r in counts if r["last"] is not None]
    active = (UploadStatus.INITIATED.value, UploadStatus.IN_PROGRESS.value)
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "active": sum(by_status[s] for s in active),
        "bytes_received": sum(r["received"] for r in counts),
        "bytes_completed": sum(r["size"] for r in counts if r["status"] == "COMPLETED"),
        "bytes_pending": sum(r["pending"] for r in counts if r["status"] in active),
        "last_activity_at": _iso(max(lasts)) if lasts else None,
        "recent": recent,
    }


# ---- files -----------------------------------------------------------------------------


async def get_file(
    pool: asyncpg.Pool, file_id: str | uuid.UUID, owner: str | None
) -> dict[str, Any] | None:
    """One live file, or None if missing, deleted or someone else's."""
    fid = _uuid_or_none(file_id)
    if fid is None:
        return None
    where = _Where()
    where.add("id = ?", fid)
    where.conds.append("deleted_at IS NULL")
    if owner is not None:
        where.add("owner = ?", owner)
    async with pool.acquire() as conn:
        r = await conn.fetchrow(
            f"SELECT {_FILE_COLUMNS} FROM readmodel.files {where.sql()}", *where.args
        )
    return _file_dict(r) if r is not None else None


async def find_file_by_sha256(
    pool: asyncpg.Pool, owner: str, sha256: str, bucket: str | None = None
) -> dict[str, Any] | None:
    """The caller's oldest live file with this content (deduplicated uploads), if any.

    Objects are left out: an object's content changes when its key is written again, so
    an upload answered with an object's id would see its bytes replaced later."""
    where = _Where()
    where.add("owner = ?", owner)
    where.add("sha256 = ?", sha256)
    where.conds.append("deleted_at IS NULL")
    where.conds.append("key IS NULL")
    if bucket is not None:
        where.add("bucket = ?", bucket)
    async with pool.acquire() as conn:
        r = await conn.fetchrow(
            f"SELECT {_FILE_COLUMNS} FROM readmodel.files {where.sql()}"
            " ORDER BY created_at, id LIMIT 1",
            *where.args,
        )
    return _file_dict(r) if r is not None else None


def escape_like(value: str) -> str:
    """Make `value` match literally in LIKE ... ESCAPE '\\'."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _aware(v: datetime | str, name: str) -> datetime:
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{name} must be an ISO 8601 timestamp") from None
    if v.tzinfo is None:
        v = v.replace(tzinfo=UTC)
    try:
        # In UTC, as the database compares it: an offset can carry a time past either end
        # of the calendar (0001-01-01T00:00+14:00), which the driver would fail on (a 500).
        return v.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{name} is outside the years 1 to 9999 in UTC") from None


async def list_files(
    pool: asyncpg.Pool,
    owner: str | None,
    *,
    bucket: str | None = None,
    name_prefix: str | None = None,
    content_type: str | None = None,
    created_after: datetime | str | None = None,
    created_before: datetime | str | None = None,
    sort: str = "created_at",
    order: str = "desc",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A page of live files and the total matching.

    `content_type` matches exactly, or a whole family with `type/*` (e.g. `image/*`).
    `created_after` is inclusive, `created_before` exclusive; naive times are UTC.
    """
    order_by = _order_by(sort, order, FILE_SORTS)
    _check_paging(limit, offset)
    where = _Where()
    where.conds.append("deleted_at IS NULL")
    if owner is not None:
        where.add("owner = ?", owner)
    if bucket is not None:
        where.add("bucket = ?", bucket)
    if name_prefix:
        where.add("name LIKE ? ESCAPE '\\'", escape_like(name_prefix) + "%")
    if content_type:
        family = content_type.endswith("/*") and len(content_type) > 2
        if "*" in (content_type[:-2] if family else content_type):
            # `*/*` or `text/x*` would match nothing, silently: a wildcard is `type/*` only.
            raise ValueError("content_type is a media type (text/plain) or a family (text/*)")
        if family:
            where.add("content_type LIKE ? ESCAPE '\\'", escape_like(content_type[:-1]) + "%")
        else:
            where.add("content_type = ?", content_type)
    if created_after is not None:
        where.add("created_at >= ?", _aware(created_after, "created_after"))
    if created_before is not None:
        where.add("created_at < ?", _aware(created_before, "created_before"))
    rows, total = await _page(
        pool, "readmodel.files", _FILE_COLUMNS, where, order_by, limit, offset
    )
    return [_file_dict(r) for r in rows], total


async def upload_average_progress(pool: asyncpg.Pool, owner: str | None) -> float | None:
    """Mean progress (percent, 0-100) of the active uploads whose length is known; None if there are
    none. Separate from `upload_stats` so that function keeps one owner."""
    where = _Where()
    where.conds.append("status IN ('INITIATED', 'IN_PROGRESS') AND file_size IS NOT NULL")
    if owner is not None:
        where.add("owner = ?", owner)
    async with pool.acquire() as conn:
        v = await conn.fetchval(
            "SELECT round(avg(CASE WHEN file_size > 0"
            " THEN least(bytes_received::numeric / file_size, 1.0) ELSE 1.0 END) * 100, 2)"
            f" FROM readmodel.uploads {where.sql()}",
            *where.args,
        )
    return float(v) if v is not None else None
