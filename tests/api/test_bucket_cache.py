"""The API's bucket cache against the real PostgreSQL: what it remembers, and every way it
forgets (a bucket event appended by anyone, a lost LISTEN, a racing change, age)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from api.bucket_cache import MAX_AGE, BucketCache
from bus.store.eventstore import PostgresEventStore
from domain.buckets import BucketState
from domain.buckets.events import BucketCreated, BucketUpdated
from domain.events import EventMeta, NewEvent
from tests.system import System, wait_until

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
WAIT = 10.0


def state(name: str, *, public: bool = False, deleted: bool = False) -> BucketState:
    return BucketState(name, "alice", public, "", T0, T0, deleted)


def created(name: str) -> BucketCreated:
    return BucketCreated(name=name, owner="alice", public=False, description="", at=T0)


class Reads:
    """A `read` for BucketCache.get that counts its calls and answers `value`."""

    def __init__(self, value: BucketState | None) -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> BucketState | None:
        self.calls += 1
        return self.value


@pytest.fixture
async def cache(db_url: str) -> AsyncIterator[BucketCache]:
    c = BucketCache(db_url, retry_interval=0.05)
    c.start()
    await asyncio.wait_for(c.listener.connected.wait(), WAIT)
    try:
        yield c
    finally:
        await c.stop()


async def append(store: PostgresEventStore, stream: str, version: int, event: object) -> None:
    await store.append(stream, version, [NewEvent.of(event)], EventMeta(occurred_at=T0))  # type: ignore[arg-type]


async def test_a_live_bucket_is_read_once_then_served_from_memory(cache: BucketCache) -> None:
    read = Reads(state("photos"))
    assert await cache.get("photos", read) == state("photos")
    assert await cache.get("photos", read) == state("photos")
    assert read.calls == 1
    assert cache.holds("photos")


async def test_missing_and_deleted_buckets_are_never_remembered(cache: BucketCache) -> None:
    missing, deleted = Reads(None), Reads(state("gone", deleted=True))
    for _ in range(2):
        assert await cache.get("nothing", missing) is None
        assert await cache.get("gone", deleted) is None
    assert (missing.calls, deleted.calls) == (2, 2)


async def test_an_event_of_the_bucket_appended_by_anyone_makes_it_forgotten(
    cache: BucketCache, event_store: PostgresEventStore
) -> None:
    # Appended straight to the store, as another process's actor would: only the trigger's
    # NOTIFY can tell this process.
    await append(event_store, "bucket-photos", 0, created("photos"))
    read = Reads(state("photos"))
    await cache.get("photos", read)
    await cache.get("photos", Reads(state("other")))
    await cache.get("other", Reads(state("other")))
    assert cache.holds("photos") and cache.holds("other")

    cache.listener.wake.clear()
    await append(event_store, "bucket-photos", 1, BucketUpdated(public=True, description="", at=T0))
    await asyncio.wait_for(cache.listener.wake.wait(), WAIT)
    assert not cache.holds("photos")
    assert cache.holds("other")  # only the bucket that changed
    read.value = state("photos", public=True)
    assert await cache.get("photos", read) == state("photos", public=True)
    assert read.calls == 2


async def test_events_of_other_streams_notify_nothing(
    cache: BucketCache, event_store: PostgresEventStore
) -> None:
    heard: list[str] = []
    b1_heard = asyncio.Event()

    def hear(*args: object) -> None:
        heard.append(str(args[3]))
        if args[3] == "b1":
            b1_heard.set()

    conn = await asyncpg.connect(cache.listener.dsn)
    try:
        await conn.add_listener("cairn_buckets", hear)
        # Not bucket streams: a file's, and a name that merely starts like a bucket's.
        await append(event_store, f"file-{uuid.uuid4()}", 0, created("photos"))
        await append(event_store, "bucketx-1", 0, created("photos"))
        await append(event_store, "bucket-b1", 0, created("b1"))
        # Notifications arrive in commit order: b1's comes after any of the others'.
        await asyncio.wait_for(b1_heard.wait(), WAIT)
    finally:
        await conn.close()
    assert heard == ["b1"]


async def test_a_lost_listen_drops_everything_and_remembers_nothing_until_it_is_back(
    cache: BucketCache, pool: asyncpg.Pool
) -> None:
    read = Reads(state("photos"))
    await cache.get("photos", read)
    pids = await pool.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN%cairn_buckets%'"
    )
    assert pids
    cache.listener.connected.clear()
    for row in pids:
        await pool.execute("SELECT pg_terminate_backend($1)", row["pid"])
    # The listener reconnects on its own; until then (and the moment the LISTEN is lost),
    # what was held is gone.
    await asyncio.wait_for(cache.listener.connected.wait(), WAIT)
    assert not cache.holds("photos")
    assert read.calls == 1
    await cache.get("photos", read)
    assert read.calls == 2 and cache.holds("photos")


async def test_nothing_is_remembered_without_a_listen(db_url: str) -> None:
    never_started = BucketCache(db_url)
    read = Reads(state("photos"))
    await never_started.get("photos", read)
    await never_started.get("photos", read)
    assert read.calls == 2 and not never_started.holds("photos")


async def test_a_read_that_raced_with_a_change_is_not_kept(cache: BucketCache) -> None:
    old = state("photos")

    async def read_while_it_changes() -> BucketState | None:
        cache.forget("photos")  # a notification arrives while the read is in flight
        return old

    assert await cache.get("photos", read_while_it_changes) == old
    assert not cache.holds("photos")


async def test_an_entry_is_read_again_after_max_age(db_url: str) -> None:
    now = [100.0]
    c = BucketCache(db_url, max_age=5.0, retry_interval=0.05, clock=lambda: now[0])
    c.start()
    try:
        await asyncio.wait_for(c.listener.connected.wait(), WAIT)
        read = Reads(state("photos"))
        await c.get("photos", read)
        now[0] += 4.9
        await c.get("photos", read)
        assert read.calls == 1
        now[0] += 0.2
        await c.get("photos", read)
        assert read.calls == 2
    finally:
        await c.stop()


# ---- through the API -----------------------------------------------------------------


async def public_object(c: httpx.AsyncClient) -> tuple[str, str]:
    """A new public bucket holding one object: (the bucket's name, the object's path)."""
    name = f"cache-{secrets.token_hex(4)}"
    assert (await c.post("/v1/buckets", json={"name": name, "public": True})).is_success
    assert (await c.put(f"/v1/buckets/{name}/objects/k", content=b"x")).status_code == 201
    return name, f"/v1/buckets/{name}/objects/k"


async def test_the_api_sees_its_own_bucket_changes_at_once(shared_system: System) -> None:
    async with shared_system.client("alice") as c, shared_system.client(None) as anon:
        name, url = await public_object(c)
        # Each answer right after the change: the bucket the GET before it remembered
        # must not be what it is judged by.
        for public, status in [(True, 200), (False, 401), (True, 200), (False, 401)]:
            r = await c.patch(f"/v1/buckets/{name}", json={"public": public})
            assert r.status_code == 200
            assert (await anon.get(url)).status_code == status
            assert (await anon.get(url)).status_code == status
        assert (await c.delete(f"/v1/buckets/{name}", params={"force": "true"})).is_success
        r = await c.put(url, content=b"y")
        assert (r.status_code, r.json()["error"]["code"]) == (404, "bucket_not_found")


async def test_the_api_hears_a_change_appended_by_another_process(shared_system: System) -> None:
    async with shared_system.client("alice") as c, shared_system.client(None) as anon:
        name, url = await public_object(c)
        assert (await anon.get(url)).status_code == 200  # remembered as public
        # Made private by a write this API process did not send (another API process's
        # command, as its actor appends it).
        store = PostgresEventStore(shared_system.pool)
        version = len(await store.read_stream(f"bucket-{name}"))
        await append(
            store, f"bucket-{name}", version, BucketUpdated(public=False, description="", at=T0)
        )

        async def private() -> bool:
            return (await anon.get(url)).status_code == 401

        # Well within the 5 s after which the cache would read it again anyway: only the
        # NOTIFY can have told it.
        assert MAX_AGE >= 5.0
        await wait_until(private, timeout=2.0)
