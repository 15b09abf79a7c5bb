"""Group commit for quota reservations: one owner's concurrent simple reservations (creates
and object PUTs) in this API process are decided in batches, one take of the owner's lock
each (projections.usage.reserve_many), instead of one take per request.

Why: a reservation holds the owner's advisory lock across several round trips (the lock,
the clean-up, the usage read, the key's holds, the insert, the commit), so one owner's
requests went one at a time at some 60-90 a second on the bench's machine, whatever their
concurrency, while the same PUTs without a quota went at 300-400 (`just bench
objects.put_4k_quota`). Now the requests that arrive while a batch is being decided wait
for the next batch together; a lone request is decided at once, as before.

The batch is drained by a task of its own, not by one of the waiting requests: a request
cancelled mid-batch (its client gone) must not stall the others. A grant that arrives for a
request that is no longer waiting is given back at once, so it never counts for nothing.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

from bus.store.eventstore import PostgresEventStore
from projections.usage import Ask, release, reserve_many

# Requests decided per take of the lock at most (one statement inserts their rows).
MAX_BATCH = 64

Answer = tuple[str | None, dict[str, int] | None, int]


@dataclass
class _Owner:
    """One owner's requests waiting for the next batch, and the task deciding batches."""

    waiting: list[tuple[Ask, asyncio.Future[Answer]]] = field(default_factory=list)
    drainer: asyncio.Task[None] | None = None


# Per event store (each app has its own), per owner.
_OWNERS: weakref.WeakKeyDictionary[PostgresEventStore, dict[str, _Owner]] = (
    weakref.WeakKeyDictionary()
)


async def reserve_batched(
    store: PostgresEventStore, owner: str, quota: int, requested: int, target: str | None
) -> Answer:
    """What projections.usage.reserve answers for `requested` bytes (to `target`, an object
    PUT's), decided with the owner's other requests waiting meanwhile in this process."""
    owners = _OWNERS.setdefault(store, {})
    entry = owners.setdefault(owner, _Owner())
    fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
    entry.waiting.append(((requested, target), fut))
    if entry.drainer is None:
        entry.drainer = asyncio.create_task(_drain(store, owner, quota, entry, owners))
    return await fut


async def _drain(
    store: PostgresEventStore, owner: str, quota: int, entry: _Owner, owners: dict[str, _Owner]
) -> None:
    batch: list[tuple[Ask, asyncio.Future[Answer]]] = []
    try:
        while entry.waiting:
            batch, entry.waiting = entry.waiting[:MAX_BATCH], entry.waiting[MAX_BATCH:]
            try:
                answers = await reserve_many(store, owner, quota, [ask for ask, _ in batch])
            except Exception as e:  # the database gone: every request of the batch fails
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), answer in zip(batch, answers, strict=True):
                if not fut.done():
                    fut.set_result(answer)
                elif answer[0] is not None:
                    # Its request went while the batch was decided: the bytes go back.
                    await asyncio.shield(release(store.pool, answer[0]))
    finally:
        entry.drainer = None
        # Cancelled (the app stopping): whoever still waits, in the batch being decided or
        # for the next, fails rather than hangs.
        for _, fut in [*batch, *entry.waiting]:
            if not fut.done():
                fut.cancel()
        entry.waiting.clear()
        if owners.get(owner) is entry:
            del owners[owner]
