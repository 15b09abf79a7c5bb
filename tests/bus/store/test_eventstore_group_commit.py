"""Group commit in PostgresEventStore: concurrent appends share one transaction, and each
caller still gets exactly its own outcome (bus/store/eventstore.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg

from bus.store.eventstore import FlushStats, PostgresEventStore
from domain.events import EventMeta, NewEvent
from domain.ports import ConcurrencyError, DuplicateCommand

META = EventMeta(occurred_at=datetime(2026, 1, 1, tzinfo=UTC), owner="alice")
HANG_GUARD = 30.0  # seconds; only so that a lost wake-up fails instead of hanging the suite


def ev(n: int) -> NewEvent:
    return NewEvent("Thing", {"n": n})


def stream() -> str:
    return f"upload-{uuid.uuid4()}"


async def transactions(pool: asyncpg.Pool, streams: list[str]) -> int:
    """How many transactions wrote the events of `streams` (rows of one share an xmin)."""
    return int(
        await pool.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM eventstore.events"
            " WHERE stream_id = ANY($1::text[])",
            streams,
        )
    )


async def test_concurrent_appends_are_written_in_one_transaction(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    streams = [stream() for _ in range(32)]
    results = await asyncio.wait_for(
        asyncio.gather(
            *[
                store.append(s, 0, [ev(k), ev(k + 100)], META, command_id=f"cmd-{s}")
                for k, s in enumerate(streams)
            ]
        ),
        HANG_GUARD,
    )
    for k, (s, recorded) in enumerate(zip(streams, results, strict=True)):
        assert [(e.stream_id, e.version, e.data) for e in recorded] == [
            (s, 1, {"n": k}),
            (s, 2, {"n": k + 100}),
        ]
        assert recorded[0].position + 1 == recorded[1].position
    positions = [e.position for r in results for e in r]
    assert positions == sorted(positions)  # queue order is position order
    # All were queued before the flusher ran: one transaction, one commit.
    assert await transactions(pool, streams) == 1
    applied = await pool.fetchval(
        "SELECT count(*) FROM eventstore.applied_commands WHERE command_id = ANY($1::text[])",
        [f"cmd-{s}" for s in streams],
    )
    assert applied == 32


async def test_appends_one_after_another_never_wait_for_a_flusher(pool: asyncpg.Pool) -> None:
    """Each append is awaited before the next: the flusher that answered the previous one
    is just finishing. A lost wake-up here would leave the next append queued forever."""
    store = PostgresEventStore(pool, flushers=1)
    s = stream()
    for v in range(20):
        (rec,) = await asyncio.wait_for(store.append(s, v, [ev(v)], META), HANG_GUARD)
        assert rec.version == v + 1
    # Each found nothing in flight and was flushed at once, alone.
    assert store.stats == FlushStats(started_at_once=20, batches=20, appends=20, largest=1)


async def loop_steps(n: int) -> None:
    """Let the event loop run `n` rounds of ready callbacks; no time passes, no I/O is
    waited for (a flusher that waited for a tick or a timer would not have run)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_lone_append_is_flushed_at_once(pool: asyncpg.Pool) -> None:
    """Nothing in flight: the append starts the flush itself and the flusher takes it in
    the next loop step, alone, without waiting for company or a tick."""
    store = PostgresEventStore(pool)
    lone = asyncio.ensure_future(store.append(stream(), 0, [ev(1)], META))
    await loop_steps(1)  # the append ran up to its await
    assert store.stats.started_at_once == 1
    await loop_steps(1)  # the flusher ran up to its first I/O
    assert store.stats == FlushStats(started_at_once=1, batches=1, appends=1, largest=1)
    (rec,) = await asyncio.wait_for(lone, HANG_GUARD)
    assert rec.version == 1
    assert store.stats == FlushStats(started_at_once=1, batches=1, appends=1, largest=1)


async def test_appends_that_come_during_a_flush_go_together_in_the_next(
    pool: asyncpg.Pool,
) -> None:
    """The classic group commit: only what queues up while a flush is being written is
    batched, and it goes in the very next batch, by the flusher already running."""
    store = PostgresEventStore(pool)
    first = asyncio.ensure_future(store.append(stream(), 0, [ev(0)], META))
    await loop_steps(2)
    assert not first.done()
    assert store.stats == FlushStats(started_at_once=1, batches=1, appends=1, largest=1)
    later = [store.append(stream(), 0, [ev(k)], META) for k in range(1, 4)]
    results = await asyncio.wait_for(asyncio.gather(first, *later), HANG_GUARD)
    assert [len(r) for r in results] == [1, 1, 1, 1]
    # No second flusher was started; the three went together, right after the first.
    assert store.stats == FlushStats(started_at_once=1, batches=2, appends=4, largest=3)


async def test_each_append_of_a_batch_gets_its_own_outcome(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    behind, applied, fresh = stream(), stream(), stream()
    await store.append(behind, 0, [ev(1), ev(2)], META)
    (first,) = await store.append(applied, 0, [ev(3)], META, command_id="once")

    outcomes = await asyncio.gather(
        store.append(behind, 1, [ev(4)], META),  # stale expected version
        store.append(applied, 1, [ev(5)], META, command_id="once"),  # applied already
        store.append(fresh, 0, [ev(6)], META, command_id="new"),
        return_exceptions=True,
    )

    conflict, duplicate, written = outcomes
    assert isinstance(conflict, ConcurrencyError)
    assert conflict.actual == 2
    assert isinstance(duplicate, DuplicateCommand)
    assert [e.id for e in duplicate.events] == [first.id]
    assert isinstance(written, list)
    assert [(e.stream_id, e.version) for e in written] == [(fresh, 1)]
    # The refused ones wrote nothing.
    assert [e.version for e in await store.read_stream(behind)] == [1, 2]
    assert [e.version for e in await store.read_stream(applied)] == [1]


async def test_a_uniqueness_race_inside_a_batch_falls_back_to_one_append_each(
    pool: asyncpg.Pool,
) -> None:
    """Two appends of one batch carry the same command id (on different streams): the
    batch's insert fails as a whole, and each is retried alone, so the first is written and
    the second is answered as the duplicate it is."""
    store = PostgresEventStore(pool)
    a, b = stream(), stream()
    ra, rb = await asyncio.gather(
        store.append(a, 0, [ev(1)], META, command_id="same"),
        store.append(b, 0, [ev(2)], META, command_id="same"),
        return_exceptions=True,
    )
    assert isinstance(ra, list)
    assert [(e.stream_id, e.version) for e in ra] == [(a, 1)]
    assert isinstance(rb, DuplicateCommand)
    assert [e.id for e in rb.events] == [ra[0].id]
    assert await store.read_stream(b) == []


async def test_two_appends_to_one_stream_go_in_order_in_separate_batches(
    pool: asyncpg.Pool,
) -> None:
    """A second append to a stream depends on the first's outcome, so it never shares its
    batch: with both expecting the same version, exactly one wins, and the other is refused."""
    store = PostgresEventStore(pool)
    s = stream()
    r1, r2, r3 = await asyncio.gather(
        store.append(s, 0, [ev(1)], META),
        store.append(s, 0, [ev(2)], META),
        store.append(s, 1, [ev(3)], META),
        return_exceptions=True,
    )
    assert isinstance(r1, list)
    assert isinstance(r2, ConcurrencyError)
    assert isinstance(r3, list)
    assert [e.data["n"] for e in await store.read_stream(s)] == [1, 3]
