"""Who runs which task: claiming the best runnable task, renewing and releasing leases.

A task is claimed by inserting its lease row (work.task_leases). The claim runs under one
transaction-scoped advisory lock, so two workers never pick the same task, and the
per-owner limit (leases of one owner still alive) is read and enforced atomically with
the insert. A lease that is not renewed runs out, and the task becomes claimable again:
that is how a crashed worker's task is taken over.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

import asyncpg

_CLAIM_LOCK = 727_200


@dataclass(frozen=True)
class Claim:
    task_id: str
    owner: str


async def claim(
    pool: asyncpg.Pool,
    worker: str,
    lease_seconds: float,
    per_owner: int,
    skip: Collection[str] = (),
) -> Claim | None:
    """Lease the highest-priority runnable task (then the oldest) whose owner is under the
    limit; None if there is none."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _CLAIM_LOCK)
        row = await conn.fetchrow(
            """
            SELECT t.id, t.owner FROM readmodel.tasks t
             WHERE t.status IN ('PENDING', 'RUNNING')
               AND t.id <> ALL($2::uuid[])
               AND NOT EXISTS (SELECT 1 FROM work.task_leases l
                                WHERE l.task_id = t.id AND l.expires_at > now())
               AND (SELECT count(*) FROM work.task_leases l
                     WHERE l.owner = t.owner AND l.expires_at > now()) < $1
             ORDER BY t.priority DESC, t.created_at, t.id
             LIMIT 1
            """,
            per_owner,
            [uuid.UUID(s) for s in skip],
        )
        if row is None:
            return None
        await conn.execute(
            """
            INSERT INTO work.task_leases (task_id, owner, worker, expires_at)
            VALUES ($1, $2, $3, now() + make_interval(secs => $4))
            ON CONFLICT (task_id) DO UPDATE
               SET owner = excluded.owner, worker = excluded.worker,
                   expires_at = excluded.expires_at
            """,
            row["id"],
            row["owner"],
            worker,
            lease_seconds,
        )
        return Claim(str(row["id"]), str(row["owner"]))


async def renew(pool: asyncpg.Pool, task_id: str, worker: str, lease_seconds: float) -> bool:
    """Extend the lease; False if this worker no longer holds it (it ran out and was taken)."""
    status = await pool.execute(
        "UPDATE work.task_leases SET expires_at = now() + make_interval(secs => $3)"
        " WHERE task_id = $1 AND worker = $2",
        uuid.UUID(task_id),
        worker,
        lease_seconds,
    )
    return bool(status.endswith(" 1"))


async def release(pool: asyncpg.Pool, task_id: str, worker: str) -> None:
    await pool.execute(
        "DELETE FROM work.task_leases WHERE task_id = $1 AND worker = $2",
        uuid.UUID(task_id),
        worker,
    )


async def holder(pool: asyncpg.Pool, task_id: str) -> str | None:
    """The worker holding a live lease on the task, if any (tests, diagnostics)."""
    value = await pool.fetchval(
        "SELECT worker FROM work.task_leases WHERE task_id = $1 AND expires_at > now()",
        uuid.UUID(task_id),
    )
    return str(value) if value is not None else None
