"""Idempotency keys: the rows that let a retried request get the first answer.

The API claims a key before running a request and stores the answer after; a replay reads
it back. Keys live `IDEMPOTENCY_TTL`; a claim whose request never finished is taken over
after `PENDING_TIMEOUT`. The cleanup run deletes expired rows (`expire`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

IDEMPOTENCY_TTL = timedelta(hours=24)
PENDING_TIMEOUT = timedelta(minutes=10)


class KeyInProgress(Exception):
    """Another request holds the key and has not answered yet."""


class KeyStore:
    """The rows of api.idempotency_keys; every statement is one atomic round trip."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def claim(
        self, owner: str, key: str, target: str, fingerprint: str | None
    ) -> tuple[asyncpg.Record | None, asyncpg.Record | None]:
        """(claim, None) if this request now holds the key, else (None, the existing row).

        The claim has the row's `token` and `created_at`; a row taken over from a dead
        holder keeps its `created_at` (the key's life and the create's id go on), an
        expired one starts afresh."""
        for _ in range(3):
            token = uuid.uuid4()
            # One statement: insert, or take over a row that expired or whose holder died;
            # a live row is left alone (the WHERE fails and nothing is returned). The unique
            # key makes a concurrent claimer wait for our commit and then see our row.
            got = await self.pool.fetchrow(
                """
                INSERT INTO api.idempotency_keys AS k
                    (owner, key, request_target, request_fingerprint, token)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (owner, key) DO UPDATE SET
                    request_target = excluded.request_target,
                    request_fingerprint = excluded.request_fingerprint,
                    token = excluded.token, status_code = NULL, response = NULL,
                    response_headers = '{}'::jsonb, completed_at = NULL,
                    created_at = CASE WHEN k.created_at < now() - $6::interval THEN now()
                                      ELSE k.created_at END
                WHERE k.created_at < now() - $6::interval
                   OR (k.completed_at IS NULL AND k.created_at < now() - $7::interval)
                RETURNING token, created_at
                """,
                owner,
                key,
                target,
                fingerprint,
                token,
                IDEMPOTENCY_TTL,
                PENDING_TIMEOUT,
            )
            if got is not None:
                return got, None
            row = await self.pool.fetchrow(
                "SELECT request_target, request_fingerprint, status_code, response,"
                " response_headers, completed_at FROM api.idempotency_keys"
                " WHERE owner = $1 AND key = $2",
                owner,
                key,
            )
            if row is not None:
                return None, row
            # Released between the two statements: claim again.
        raise KeyInProgress("a request with this key is in progress")

    async def complete(
        self,
        owner: str,
        key: str,
        token: uuid.UUID,
        fingerprint: str,
        status_code: int,
        content: bytes,
        headers: dict[str, str],
    ) -> None:
        await self.pool.execute(
            "UPDATE api.idempotency_keys SET request_fingerprint = $4, status_code = $5,"
            " response = $6, response_headers = $7, completed_at = now()"
            " WHERE owner = $1 AND key = $2 AND token = $3",
            owner,
            key,
            token,
            fingerprint,
            status_code,
            content,
            headers,
        )

    async def release(self, owner: str, key: str, token: uuid.UUID) -> None:
        await self.pool.execute(
            "DELETE FROM api.idempotency_keys WHERE owner = $1 AND key = $2 AND token = $3",
            owner,
            key,
            token,
        )


async def expire(pool: asyncpg.Pool) -> int:
    """Delete keys older than IDEMPOTENCY_TTL; return how many."""
    status = await pool.execute(
        "DELETE FROM api.idempotency_keys WHERE created_at < now() - $1::interval",
        IDEMPOTENCY_TTL,
    )
    return int(status.split()[-1])
