"""Idempotency keys: the rows that let a retried request get the first answer.

The API claims a key before running a request and stores the answer after; a replay reads
it back. Keys live `IDEMPOTENCY_TTL`; the cleanup run deletes expired rows (`expire`).

A claim is a lease tied to its holder: it lasts `LEASE` and the request running it renews
it every `RENEW_EVERY` (api/idempotency.py), so while the holder lives nobody else runs the
same key, and when the holder dies (SIGKILL, crash, lost network) the next retry takes the
row over within `LEASE`. A restarted API process releases its predecessor's claims at once
(`release_holder`: the holder is host:port, which only one live process can listen on, or
host:port#N for the Nth of several API processes sharing a port, api/app.py). A
request that fails with an unknown outcome releases its claim the same way.

Released and taken-over rows keep `created_at`: the create's upload id is derived from it,
so a retry after a crash names the same upload as the request that died (the actor answers
"already applied" if that one got through) and no orphaned upload is left behind. Rows
claimed before leases existed (no `lease_until`) are taken over after `PENDING_TIMEOUT`.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from bus.ids import uuid4

IDEMPOTENCY_TTL = timedelta(hours=24)
PENDING_TIMEOUT = timedelta(minutes=10)
LEASE = timedelta(seconds=6)
RENEW_EVERY = 2.0  # seconds: a holder renews three times per lease, so one late renewal
# (a busy loop, a slow database) does not lose a claim that is still being worked on


class KeyInProgress(Exception):
    """Another request holds the key and has not answered yet."""


class KeyStore:
    """The rows of api.idempotency_keys; every statement is one atomic round trip."""

    def __init__(self, pool: asyncpg.Pool, lease: timedelta = LEASE) -> None:
        self.pool = pool
        self.lease = lease

    async def claim(
        self, owner: str, key: str, target: str, fingerprint: str | None, holder: str = ""
    ) -> tuple[asyncpg.Record | None, asyncpg.Record | None]:
        """(claim, None) if this request now holds the key, else (None, the existing row).

        The claim has the row's `token` and `created_at`; a row taken over from a dead or
        released holder keeps its `created_at` (the key's life and the create's id go on),
        an expired one starts afresh."""
        for _ in range(3):
            token = uuid4()
            # One statement: insert, or take over a row that expired or whose lease ran
            # out; a live row is left alone (the WHERE fails and nothing is returned). The
            # unique key makes a concurrent claimer wait for our commit and then see our row.
            got = await self.pool.fetchrow(
                """
                INSERT INTO api.idempotency_keys AS k
                    (owner, key, request_target, request_fingerprint, token, lease_until,
                     holder)
                VALUES ($1, $2, $3, $4, $5, now() + $8::interval, $9)
                ON CONFLICT (owner, key) DO UPDATE SET
                    request_target = excluded.request_target,
                    request_fingerprint = excluded.request_fingerprint,
                    token = excluded.token, status_code = NULL, response = NULL,
                    response_body = NULL, response_headers = '{}'::jsonb, completed_at = NULL,
                    lease_until = excluded.lease_until, holder = excluded.holder,
                    created_at = CASE WHEN k.created_at < now() - $6::interval THEN now()
                                      ELSE k.created_at END
                WHERE k.created_at < now() - $6::interval
                   OR (k.completed_at IS NULL AND (
                         k.lease_until <= now()
                      OR (k.lease_until IS NULL AND k.created_at < now() - $7::interval)))
                RETURNING token, created_at
                """,
                owner,
                key,
                target,
                fingerprint,
                token,
                IDEMPOTENCY_TTL,
                PENDING_TIMEOUT,
                self.lease,
                holder,
            )
            if got is not None:
                return got, None
            row = await self.pool.fetchrow(
                "SELECT request_target, request_fingerprint, status_code, response,"
                " response_body, response_headers, completed_at,"
                " (completed_at IS NULL AND lease_until <= now()) AS free"
                " FROM api.idempotency_keys WHERE owner = $1 AND key = $2",
                owner,
                key,
            )
            if row is not None and not row["free"]:
                return None, row
            # Released (or its lease ran out) between the two statements: claim again.
        raise KeyInProgress("a request with this key is in progress")

    async def renew(self, owner: str, key: str, token: uuid.UUID) -> bool:
        """Extend a pending claim's lease; False if it is no longer ours."""
        status = await self.pool.execute(
            "UPDATE api.idempotency_keys SET lease_until = now() + $4::interval"
            " WHERE owner = $1 AND key = $2 AND token = $3 AND completed_at IS NULL",
            owner,
            key,
            token,
            self.lease,
        )
        return str(status).split()[-1] != "0"

    async def release_holder(self, holder: str) -> int:
        """Free every pending claim of `holder` (a restarted process: its predecessor is
        dead); return how many."""
        status = await self.pool.execute(
            "UPDATE api.idempotency_keys SET lease_until = now()"
            " WHERE holder = $1 AND completed_at IS NULL",
            holder,
        )
        return int(status.split()[-1])

    async def complete(
        self,
        owner: str,
        key: str,
        token: uuid.UUID,
        fingerprint: str,
        status_code: int,
        content: Any,
        headers: dict[str, str],
        body: bytes | None = None,
    ) -> None:
        """Store the answer: `content` as JSON (readable), `body` as the exact bytes sent."""
        await self.pool.execute(
            "UPDATE api.idempotency_keys SET request_fingerprint = $4, status_code = $5,"
            " response = $6, response_headers = $7, response_body = $8, completed_at = now()"
            " WHERE owner = $1 AND key = $2 AND token = $3",
            owner,
            key,
            token,
            fingerprint,
            status_code,
            content,
            headers,
            body,
        )

    async def release(self, owner: str, key: str, token: uuid.UUID) -> None:
        """Give the claim up without an answer (the outcome is unknown or not worth
        keeping): the next request with the key takes the row over, keeping created_at."""
        await self.pool.execute(
            "UPDATE api.idempotency_keys SET lease_until = now()"
            " WHERE owner = $1 AND key = $2 AND token = $3 AND completed_at IS NULL",
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
