"""The fan-out with no subscription attached moves its head without reading events, and a
subscription that attaches afterwards still gets every later event (no gap at the
hand-over); one that attaches while the head is being moved is served by a full read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from api.events import fanout as fanout_module
from api.events.fanout import FanOut
from bus.store import feed
from bus.store.eventstore import PostgresEventStore
from bus.store.feed import Selector
from domain.events import EventMeta, NewEvent
from tests.system import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _append(store: PostgresEventStore, stream: str, n: int) -> list[int]:
    out = []
    for _ in range(n):
        version = await store.stream_version(stream)
        (ev,) = await store.append(
            stream,
            version,
            [NewEvent("UploadChunkStored", {"index": version})],
            EventMeta(occurred_at=datetime.now(UTC), owner="ann"),
        )
        out.append(ev.position)
    return out


async def _until(predicate: Any) -> None:
    async def check() -> bool:
        return bool(predicate())

    await wait_until(check, timeout=10, interval=0.01)


@asynccontextmanager
async def _started(
    pool: asyncpg.Pool, db_url: str, store: PostgresEventStore, stream: str, n: int
) -> AsyncIterator[tuple[FanOut, list[int]]]:
    """A fan-out, listening, whose head has reached `n` events just appended to `stream`."""
    fan = FanOut(pool, db_url, poll_interval=0.2)
    await fan.start()
    try:
        await _until(fan.listener.connected.is_set)
        positions = await _append(store, stream, n)
        await _until(lambda: fan.head == positions[-1])
        yield fan, positions
    finally:
        await fan.stop()


async def test_an_idle_fanout_moves_its_head_without_reading_events(
    pool: asyncpg.Pool, db_url: str, event_store: PostgresEventStore, monkeypatch: Any
) -> None:
    reads: list[int] = []
    real_read = feed.read_after

    async def counting_read(*args: Any, **kw: Any) -> Any:
        reads.append(1)
        return await real_read(*args, **kw)

    monkeypatch.setattr(fanout_module.feed, "read_after", counting_read)
    async with _started(pool, db_url, event_store, "upload-idle-1", 5) as (fan, _):
        assert reads == []  # the head moved by the notified positions, no event was read

        sub = fan.subscribe(Selector(owner="ann"), None, "sse")
        assert await sub.next(0.05) == []  # caught up at once: attached
        assert sub.attached
        later = await _append(event_store, "upload-idle-1", 3)
        got: list[int] = []
        while len(got) < 3:
            got += [e.position for e in await sub.next(5.0)]
        assert got == later
        assert reads  # with a subscriber attached, the reader reads and hands out again
        sub.close()


async def test_an_idle_fanout_follows_the_notified_positions_without_a_query(
    pool: asyncpg.Pool, db_url: str, event_store: PostgresEventStore, monkeypatch: Any
) -> None:
    async with _started(pool, db_url, event_store, "upload-idle-3", 1) as (fan, _):
        queries: list[int] = []
        real_head = feed.head

        async def counting_head(p: asyncpg.Pool) -> int:
            queries.append(1)
            return await real_head(p)

        monkeypatch.setattr(fanout_module.feed, "head", counting_head)
        positions = await _append(event_store, "upload-idle-3", 4)
        await _until(lambda: fan.head == positions[-1])
        assert queries == []  # each append's NOTIFY named its position

        # A wake-up that names nothing newer (here: a reconnect's) asks the store.
        fan.listener.wake.set()
        await _until(lambda: bool(queries))
        assert fan.head == positions[-1]


async def test_a_subscription_attaching_during_the_skip_is_handed_what_follows(
    pool: asyncpg.Pool, db_url: str, event_store: PostgresEventStore, monkeypatch: Any
) -> None:
    async with _started(pool, db_url, event_store, "upload-idle-2", 1) as (fan, _):
        # Wake-ups that name no position (as after a reconnect), so the skip asks the store.
        fan.listener.on_payload = None
        real_head = feed.head
        subs: list[Any] = []

        async def head_while_one_attaches(p: asyncpg.Pool) -> int:
            latest = await real_head(p)
            if not subs:
                # A client subscribes while the skip's query is out: it catches up to the
                # old head and attaches. The skip must not move past what follows.
                sub = fan.subscribe(Selector(owner="ann"), None, "sse")
                assert await sub.next(0.01) == []
                assert sub.attached
                subs.append(sub)
            return latest

        monkeypatch.setattr(fanout_module.feed, "head", head_while_one_attaches)
        racing = await _append(event_store, "upload-idle-2", 2)
        await _until(lambda: bool(subs))
        got: list[int] = []
        async with asyncio.timeout(10):
            while len(got) < 2:
                got += [e.position for e in await subs[0].next(1.0)]
        assert got == racing
        subs[0].close()
