"""A subscription's `caught_up` (api/events/fanout.py): everything up to the store's head
when the stream was asked for, read from the store even where the fan-out's reader has
not got that far, and said as soon as it is so (not after the next live event)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from api.events.fanout import FanOut
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store import feed
from bus.store.eventstore import PostgresEventStore
from bus.store.feed import Selector
from domain.events import EventMeta, NewEvent
from tests.system import System, isolated_system

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(pg_server.url, kafka_server.bootstrap) as s:
        await s.stop("relay")  # synthetic events: keep them off Kafka and the projections
        yield s


async def _append(s: System, owner: str, n: int) -> list[int]:
    store = PostgresEventStore(s.pool)
    stream = f"upload-{uuid.uuid4()}"
    recorded = await store.append(
        stream,
        0,
        [NewEvent("UploadChunkStored", {"index": i}) for i in range(n)],
        EventMeta(occurred_at=datetime.now(UTC), owner=owner),
    )
    return [e.position for e in recorded]


async def test_caught_up_reads_the_store_up_to_the_head_the_reader_has_not_reached(
    system: System,
) -> None:
    # A fan-out whose reader never ran: its head is 0, behind every event in the store.
    fan = FanOut(system.pool, system.settings.database_url)
    me = f"u-{secrets.token_hex(4)}"
    mine = await _append(system, me, 3)
    await _append(system, f"u-{secrets.token_hex(4)}", 2)  # someone else's, after mine
    head = await feed.head(system.pool)
    sub = fan.subscribe(Selector(owner=me), mine[0] - 1, "sse", until=head)
    try:
        assert not sub.caught_up and not sub.announce_caught_up()
        got = await sub.next(5.0)
        assert [e.position for e in got] == mine and sub.caught_up
        # Said once per subscription (the SSE and WebSocket streams both ask after each batch).
        assert sub.announce_caught_up() and not sub.announce_caught_up()
        # When the reader gets there, what it offers again is skipped by position.
        assert await sub.next(0.01) == [] and sub.attached
        fan._publish(await feed.read_after(system.pool, 0, limit=1000))
        assert await sub.next(0.01) == []
    finally:
        sub.close()

    # Nothing up to the head is this user's: caught up at once, not after a live event or
    # a heartbeat's wait (it has not even attached yet).
    other = fan.subscribe(Selector(owner=f"u-{secrets.token_hex(4)}"), 0, "sse", until=head)
    try:
        assert await other.next(60.0) == [] and other.caught_up and not other.attached
    finally:
        other.close()

    # Without a resume position a stream starts at the reader's head: caught up from the
    # start, whatever `until` says.
    live = fan.subscribe(Selector(owner=me), None, "sse", until=head)
    assert live.caught_up and live.announce_caught_up() and not live.announce_caught_up()
    live.close()
