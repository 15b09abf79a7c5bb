"""api/quota_batches.py: one owner's concurrent reservations are decided in batches (fewer
takes of the lock than requests) with the same outcome as one by one, and a request that
goes while its batch is decided gets nothing held in its name."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api import quota_batches
from api.quota_batches import reserve_batched
from bus.store.eventstore import PostgresEventStore
from projections.usage import storage_used

QUOTA = 100_000


async def test_concurrent_requests_share_batches_and_never_pass_together(
    event_store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    decide = quota_batches.reserve_many

    async def counted(*args: Any) -> Any:
        batches.append(len(args[3]))
        return await decide(*args)

    monkeypatch.setattr(quota_batches, "reserve_many", counted)
    got = await asyncio.gather(
        *[reserve_batched(event_store, "qb1", QUOTA, 30_000, None) for _ in range(10)]
    )
    assert [rid is not None for rid, _, _ in got].count(True) == 3
    refusals = [details for rid, details, _ in got if rid is None]
    assert refusals == [{"quota": QUOTA, "used": 90_000, "requested": 30_000}] * 7
    assert await storage_used(event_store, "qb1") == 90_000
    # All ten were waiting by the time the batch's task first ran: one take of the lock.
    assert batches == [10]
    assert quota_batches._OWNERS[event_store] == {}  # nothing left behind for the owner


async def test_a_request_gone_mid_batch_holds_nothing(
    event_store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    deciding, go = asyncio.Event(), asyncio.Event()
    decide = quota_batches.reserve_many

    async def gated(*args: Any) -> Any:
        if not deciding.is_set():  # the first batch waits, so the next one gathers
            deciding.set()
            await go.wait()
        return await decide(*args)

    monkeypatch.setattr(quota_batches, "reserve_many", gated)
    first = asyncio.create_task(reserve_batched(event_store, "qb2", QUOTA, 10_000, None))
    await deciding.wait()
    entry = quota_batches._OWNERS[event_store]["qb2"]
    drainer = entry.drainer
    assert drainer is not None and entry.waiting == []
    gone = asyncio.create_task(reserve_batched(event_store, "qb2", QUOTA, 20_000, None))
    await asyncio.sleep(0)  # one turn of the loop: the task runs up to its wait
    assert len(entry.waiting) == 1
    gone.cancel()
    go.set()
    rid, details, _ = await first
    assert rid is not None and details is None
    await drainer  # the second batch decided (granted), then given back
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await storage_used(event_store, "qb2") == 10_000
