"""1,000 concurrent SSE clients on one API process each receive every event they are entitled
to, in order, from the one fan-out; and the API keeps nothing of what it delivered.

The API runs in the test's own process (next to the 1,000 clients and their socket
buffers), so its memory is judged by what it holds, not by RSS: once everything is
delivered, only a few of the newest events are still referenced (each stream holds its last
batch while it waits for the next). Queues that kept history, or a cache of frames, would show up
here in the hundreds. The API process's RSS per idle client is measured by the bench
(`just bench --quick events.sse_fanout`), in a process of its own."""

from __future__ import annotations

import asyncio
import gc
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.eventstore import PostgresEventStore
from bus.store.feed import FeedEvent
from domain.events import EventMeta, NewEvent
from tests.api.sse import SSEClient
from tests.system import System, isolated_system

pytestmark = pytest.mark.asyncio(loop_scope="session")

USERS = 10
PER_USER = 99  # clients per user; plus one admin client per user: 1,000 in all
ROUNDS_WARM, ROUNDS = 5, 55  # rounds of one event per user


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(pg_server.url, kafka_server.bootstrap) as s:
        # The test appends synthetic events straight to the store; keep them off Kafka (and
        # away from the projections, which would refuse them).
        await s.stop("relay")
        yield s


class Follower:
    """One client: checks each event against the positions it is entitled to, in order,
    keeping only a counter (so the test's own memory does not grow either)."""

    def __init__(self, client: SSEClient, expected: list[int]) -> None:
        self.client = client
        self.expected = expected  # shared per user, filled as the test appends
        self.seen = 0

    async def read_until(self, n: int) -> None:
        while self.seen < n:
            msg = await self.client.next_event()
            assert msg is not None and msg.event == "UploadChunkStored", msg
            assert int(msg.id or 0) == self.expected[self.seen]
            self.seen += 1


async def test_a_thousand_clients_each_get_everything_they_may_see(system: System) -> None:
    users = [f"u-{secrets.token_hex(4)}" for _ in range(USERS)]
    streams = {u: f"upload-{uuid.uuid4()}" for u in users}
    expected: dict[str, list[int]] = {u: [] for u in users}
    everything: list[int] = []

    async def open_one(who: str, admin: bool) -> SSEClient:
        c = await SSEClient.open(system.url, "/v1/events", system.token(who, admin))
        assert c.status == 200, c.body
        first = await c.next()
        assert first is not None and first.comments  # subscribed from here on
        return c

    followers: list[Follower] = []
    for u in users:  # opened a hundred at a time
        clients = await asyncio.gather(
            *[open_one(u, False) for _ in range(PER_USER)], open_one(f"admin-{u}", True)
        )
        followers += [Follower(c, expected[u]) for c in clients[:-1]]
        followers.append(Follower(clients[-1], everything))
    assert len(followers) == 1000

    store = PostgresEventStore(system.pool)

    async def round_of_appends() -> None:
        for u in users:
            version = await store.stream_version(streams[u])
            (ev,) = await store.append(
                streams[u],
                version,
                [NewEvent("UploadChunkStored", {"index": version, "pad": "x" * 1024})],
                EventMeta(occurred_at=datetime.now(UTC), owner=u),
            )
            expected[u].append(ev.position)
            everything.append(ev.position)

    def per_client(rounds: int, f: Follower) -> int:
        return rounds * (USERS if f.expected is everything else 1)

    try:
        for _ in range(ROUNDS_WARM):
            await round_of_appends()
        await asyncio.gather(*[f.read_until(per_client(ROUNDS_WARM, f)) for f in followers])

        for _ in range(ROUNDS - ROUNDS_WARM):
            await round_of_appends()
        await asyncio.gather(*[f.read_until(per_client(ROUNDS, f)) for f in followers])
        gc.collect()
        held = sum(1 for o in gc.get_objects() if isinstance(o, FeedEvent))
    finally:
        await asyncio.gather(*[f.client.close() for f in followers])

    # Each of the 1,000 clients got exactly its events, in order (checked as they came).
    assert all(f.seen == per_client(ROUNDS, f) for f in followers)
    # 550 events were delivered 60,500 times; only the newest few are still referenced.
    assert held <= 3 * USERS, held
