"""PostgresEventStore.read_latest: the newest events of one type, and of those only one
owner's when asked (the quota check reads its owner's unprojected upload initiations)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from bus.store.eventstore import PostgresEventStore
from domain.events import EventMeta, NewEvent

AT = datetime(2026, 12, 7, tzinfo=UTC)


async def test_the_newest_of_a_type_and_of_those_one_owner_s(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    kind = f"Latest{uuid.uuid4().hex[:8]}"  # a type of this test's own: the database is shared
    owners = ["alice", "bob", "alice", "alice", "bob", "alice", "bob", "alice"]
    for n, owner in enumerate(owners):
        await store.append(
            f"thing-{uuid.uuid4()}", 0, [NewEvent(kind, {"n": n})], EventMeta(AT, owner=owner)
        )
    await store.append(f"thing-{uuid.uuid4()}", 0, [NewEvent("Other", {"n": 99})], EventMeta(AT))

    newest = await store.read_latest(kind, 5)
    assert [e.data["n"] for e in newest] == [7, 6, 5, 4, 3]
    # Alice's among those five: not her five newest (n=0 and 2 are older than the five).
    alices = await store.read_latest(kind, 5, owner="alice")
    assert [e.data["n"] for e in alices] == [7, 5, 3]
    assert {e.owner for e in alices} == {"alice"}
    async with pool.acquire() as conn:
        assert [e.data["n"] for e in await store.read_latest(kind, 5, conn, owner="bob")] == [6, 4]
    assert await store.read_latest(kind, 5, owner="carol") == []
