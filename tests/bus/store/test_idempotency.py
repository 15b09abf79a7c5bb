"""Idempotency key claims against the real Postgres: a claim is a lease tied to its holder;
a dead or released holder's claim is taken over, keeping when the key was first claimed
(the create's derived upload id depends on it)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from bus.store.idempotency import KeyStore
from tests.system import wait_until


async def test_a_live_claim_is_exclusive_and_a_dead_one_is_taken_over(
    pool: asyncpg.Pool,
) -> None:
    keys = KeyStore(pool, lease=timedelta(seconds=1))
    claim, row = await keys.claim("alice", "k1", "POST /v1/uploads", "fp", "host:1")
    assert claim is not None and row is None
    # renewed while "running": nobody else gets it, across several lease lengths
    for _ in range(3):
        assert await keys.renew("alice", "k1", claim["token"])
        other, row = await keys.claim("alice", "k1", "POST /v1/uploads", "fp", "host:2")
        assert other is None and row is not None and row["completed_at"] is None

    # the holder dies (no more renewals): the next claim takes it over once the lease ran
    # out, and keeps created_at
    async def taken_over() -> asyncpg.Record | None:
        got, _ = await keys.claim("alice", "k1", "POST /v1/uploads", "fp", "host:2")
        return got

    second = await wait_until(taken_over, timeout=30, interval=0.2)
    assert second["token"] != claim["token"]
    assert second["created_at"] == claim["created_at"]
    # the old holder can no longer complete or renew it
    assert not await keys.renew("alice", "k1", claim["token"])
    await keys.complete("alice", "k1", claim["token"], "fp", 201, {"x": 1}, {}, b'{"x":1}')
    assert (
        await pool.fetchval(
            "SELECT completed_at FROM api.idempotency_keys WHERE owner = 'alice' AND key = 'k1'"
        )
        is None
    )


async def test_release_and_a_restarted_holder_free_claims_at_once(pool: asyncpg.Pool) -> None:
    keys = KeyStore(pool)  # the real lease: nothing here waits for it to run out
    claim, _ = await keys.claim("bob", "k", "POST /v1/uploads", "fp", "api-a:8000")
    assert claim is not None
    await keys.release("bob", "k", claim["token"])
    again, row = await keys.claim("bob", "k", "POST /v1/uploads", "fp", "api-b:8000")
    assert again is not None and again["created_at"] == claim["created_at"]

    # api-b dies holding it; restarted on the same host and port it frees the claim at once
    assert (await keys.claim("bob", "k", "POST /v1/uploads", "fp", "api-c:8000"))[0] is None
    assert await keys.release_holder("api-b:8000") == 1
    third, _ = await keys.claim("bob", "k", "POST /v1/uploads", "fp", "api-c:8000")
    assert third is not None and third["created_at"] == claim["created_at"]

    # a completed key is never taken over: it is replayed
    await keys.complete("bob", "k", third["token"], "fp", 201, {"id": "u"}, {}, b'{"id":"u"}')
    assert await keys.release_holder("api-c:8000") == 0
    none, row = await keys.claim("bob", "k", "POST /v1/uploads", "fp", "api-d:8000")
    assert none is None and row["response_body"] == b'{"id":"u"}' and row["status_code"] == 201
