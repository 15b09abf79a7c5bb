"""The relay against the real embedded Postgres and Tansu broker.

What is asserted is what a Kafka consumer really reads back: topics, keys, the API.md
envelope and headers, order per partition, and that nothing is skipped or published by two
relays at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, header, make_consumer, make_producer
from bus.run.embedded import EmbeddedKafka
from bus.store.eventstore import PostgresEventStore
from bus.store.relay import PUBLISHED_CHANNEL, Relay, replay
from domain.events import EventMeta, NewEvent, RecordedEvent
from domain.uploads.events import UploadChunkStored
from tests.ports import free_port
from tests.wire import EVENT_ENVELOPE

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
META = EventMeta(
    occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    owner="alice",
    correlation_id="corr-1",
    causation_id="cause-1",
    traceparent=TRACEPARENT,
)
META_UNTRACED = EventMeta(occurred_at=datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC), owner="bob")


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 20.0
) -> None:
    """Bounded poll for a condition nothing can be awaited on (another process's state)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        ok = check()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def published(
    settings: Settings, aggregates: Iterable[str] = ("uploads", "files")
) -> dict[TopicPartition, list[ConsumerRecord]]:
    """Everything in the topics now, per partition in offset order.

    Called once the relay's checkpoint covers what we expect: the relay advances it only
    after Kafka acknowledged, so the end offsets read here already include every message.
    """
    tps = [
        TopicPartition(settings.topic(a), p)
        for a in aggregates
        for p in range(settings.kafka_partitions)
    ]
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in tps}
        deadline = asyncio.get_running_loop().time() + 20
        while any(len(out[tp]) < end[tp] for tp in tps):
            assert asyncio.get_running_loop().time() < deadline, (
                f"could not read to end offsets {end}: got { {tp: len(m) for tp, m in out.items()} }"
            )
            for tp, msgs in (await consumer.getmany(timeout_ms=200)).items():
                out[tp].extend(msgs)
        return {tp: msgs for tp, msgs in out.items() if msgs}
    finally:
        await consumer.stop()


def flat(parts: dict[TopicPartition, list[ConsumerRecord]]) -> list[ConsumerRecord]:
    return [m for msgs in parts.values() for m in msgs]


def ids(msgs: Iterable[ConsumerRecord]) -> list[str]:
    return [str(header(m.headers, "event-id")) for m in msgs]


def positions(msgs: Iterable[ConsumerRecord]) -> list[int]:
    return [orjson.loads(m.value)["position"] for m in msgs]


async def at_checkpoint(relay: Relay, position: int) -> bool:
    return await relay.checkpoint() >= position


def ev(n: int, **extra: object) -> NewEvent:
    return NewEvent("Thing", {"n": n, **extra})


@contextlib.asynccontextmanager
async def leading(relay: Relay) -> AsyncIterator[None]:
    """`relay.run` in the background (its topics created), once it leads; stopped (and
    awaited) at the end."""
    await ensure_topics(relay.settings)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.is_leader, "leadership")
        yield
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)


async def test_publishes_envelope_headers_topics_and_keys_in_order(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await ensure_topics(settings)
    up, fi = uuid.uuid4(), uuid.uuid4()
    stored: list[RecordedEvent] = []
    stored += await event_store.append(
        f"upload-{up}",
        0,
        [NewEvent("UploadStarted", {"file_name": "a.bin"}), NewEvent("UploadChunkStored", {})],
        META,
    )
    stored += await event_store.append(
        f"file-{fi}", 0, [NewEvent("FileCreated", {"size": 3})], META_UNTRACED
    )
    stored += await event_store.append(
        f"upload-{up}", 2, [NewEvent("UploadCompleted", {"file_id": str(fi)})], META
    )
    stored += await event_store.append(f"file-{fi}", 1, [NewEvent("FileRenamed", {})], META)

    relay = Relay(settings, pool)
    assert await relay.publish_pending() == 5
    assert await relay.checkpoint() == stored[-1].position

    parts = await published(settings)
    by_id = {header(m.headers, "event-id"): m for m in flat(parts)}
    assert len(by_id) == len(flat(parts)) == 5
    for e in stored:
        m = by_id[e.id]
        aggregate = "uploads" if e.stream_id.startswith("upload-") else "files"
        assert m.topic == f"{settings.topic_prefix}.{aggregate}"
        assert m.key == str(up if aggregate == "uploads" else fi).encode()
        value = orjson.loads(m.value)
        assert set(value) == EVENT_ENVELOPE
        assert value == {
            "id": e.id,
            "type": e.type,
            "schema_version": 1,
            "stream_id": e.stream_id,
            "version": e.version,
            "position": e.position,
            "occurred_at": e.occurred_at.isoformat(),
            "owner": e.owner,
            "correlation_id": e.correlation_id,
            "causation_id": e.causation_id,
            "data": e.data,
        }
        assert datetime.fromisoformat(value["occurred_at"]).tzinfo is not None
        expected_headers = {
            "event-id": e.id.encode(),
            "event-type": e.type.encode(),
            "schema-version": b"1",
            "content-type": b"application/json",
        }
        if e.traceparent:
            expected_headers["traceparent"] = e.traceparent.encode()
        assert dict(m.headers) == expected_headers
    assert header(by_id[stored[2].id].headers, "traceparent") is None

    # One aggregate = one key = one partition, in position (and so version) order.
    for aggregate_msgs in parts.values():
        assert positions(aggregate_msgs) == sorted(positions(aggregate_msgs))
    upload_parts = [msgs for tp, msgs in parts.items() if tp.topic.endswith(".uploads")]
    assert len(upload_parts) == 1
    assert [orjson.loads(m.value)["version"] for m in upload_parts[0]] == [1, 2, 3]


async def test_a_new_relay_resumes_after_the_checkpoint(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await ensure_topics(settings)
    first = [await event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(i)], META) for i in range(3)]
    assert await Relay(settings, pool).publish_pending() == 3
    assert await Relay(settings, pool).publish_pending() == 0

    later = await event_store.append(f"file-{uuid.uuid4()}", 0, [ev(3), ev(4)], META)
    fresh = Relay(settings, pool, batch_size=1)  # several batches, each checkpointed
    assert await fresh.publish_pending() == 2
    assert await fresh.checkpoint() == later[-1].position

    got = ids(flat(await published(settings)))
    assert sorted(got) == sorted([e[0].id for e in first] + [e.id for e in later])


async def test_a_pass_that_published_notifies_once_and_an_empty_one_not_at_all(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    """The idle gates of the projector and the handlers wake on this (bus/actors/wake.py)."""
    await ensure_topics(settings)
    name = f"notify-{uuid.uuid4()}"  # the payload tells this relay's NOTIFYs from others'
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await pool.acquire()

    def on_notify(_c: object, _pid: int, _channel: str, payload: str) -> None:
        heard.put_nowait(payload)

    await conn.add_listener(PUBLISHED_CHANNEL, on_notify)
    try:
        for i in range(2):
            await event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(i)], META)
        relay = Relay(settings, pool, name=name, batch_size=1)  # several batches, one pass
        assert await relay.publish_pending() >= 2
        assert await relay.publish_pending() == 0
        # NOTIFYs arrive in commit order: once this marker is heard, so is every earlier one.
        await pool.execute("SELECT pg_notify($1, $2)", PUBLISHED_CHANNEL, f"{name}-end")
        got: list[str] = []
        while not got or got[-1] != f"{name}-end":
            got.append(await asyncio.wait_for(heard.get(), 10))
        assert [g for g in got if g.startswith(name)] == [name, f"{name}-end"]
    finally:
        await conn.remove_listener(PUBLISHED_CHANNEL, on_notify)
        await pool.release(conn)


async def test_a_failed_announcement_does_not_fail_the_pass(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The NOTIFY is a hint: PostgreSQL refusing it (here a channel name over its 63-byte
    limit) leaves the pass published and checkpointed."""
    from bus.store import relay as relay_module

    await ensure_topics(settings)
    monkeypatch.setattr(relay_module, "PUBLISHED_CHANNEL", "x" * 100)
    with pytest.raises(asyncpg.PostgresError):  # the refusal this test relies on
        await pool.execute("SELECT pg_notify($1, '')", "x" * 100)
    appended = await event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(0)], META)
    relay = Relay(settings, pool, name=f"hint-{uuid.uuid4()}")
    assert await relay.publish_pending() >= 1
    assert await relay.checkpoint() >= appended[-1].position


async def test_a_late_commit_with_a_lower_position_is_not_skipped(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    """THE ORDERING TEST.

    A draws the lower position, then stalls inside its transaction (the trigger sleeps);
    B appends meanwhile. With a naive store (no append lock) B would draw the higher position
    and commit first; the relay, polling the whole time, would publish B and advance its
    checkpoint past A's position; when A then commits, `position > checkpoint` never sees it
    again and A is lost for good. The store's append lock makes B wait for A's commit, so
    positions become visible in order. This test catches any regression of that.
    """
    # One partition, so "A before B" in the topic is the relay's publish order.
    settings = replace(settings, kafka_partitions=1)
    await ensure_topics(settings)
    async with pool.acquire() as conn:
        await conn.execute(
            """
            CREATE FUNCTION public.slow_append() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.data->>'slow' = 'true' THEN PERFORM pg_sleep(1); END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER slow_append AFTER INSERT ON eventstore.events
                FOR EACH ROW EXECUTE FUNCTION public.slow_append();
            """
        )

    async def backends_waiting_on(wait_event: str) -> bool:
        async with pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event = $1",
                    wait_event,
                )
            )

    before = await event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(0)], META)
    relay = Relay(settings, pool, safety_interval=0.02)  # polls all through the race
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: at_checkpoint(relay, before[0].position), "relay caught up")

        append_a = asyncio.create_task(
            event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(1, slow="true")], META)
        )
        await eventually(lambda: backends_waiting_on("PgSleep"), "A sleeping in its transaction")
        # B from another store object, as from another process: appends of one store are
        # queued behind each other in-process (group commit) and would not even reach the
        # lock; across processes the lock is what keeps positions in commit order.
        append_b = asyncio.create_task(
            PostgresEventStore(pool).append(f"upload-{uuid.uuid4()}", 0, [ev(2)], META)
        )
        # B is really concurrent: inside its transaction, queued on the append lock.
        await eventually(lambda: backends_waiting_on("advisory"), "B waiting on the append lock")
        assert not append_a.done()
        (a,), (b,) = await asyncio.wait_for(asyncio.gather(append_a, append_b), 20)
        assert a.position < b.position

        await eventually(lambda: at_checkpoint(relay, b.position), "relay published B")
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)

    (msgs,) = (await published(settings, ["uploads"])).values()
    assert ids(msgs) == [before[0].id, a.id, b.id]


async def test_replay_republishes_from_a_position_and_keeps_the_checkpoint(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await ensure_topics(settings)
    stream = f"upload-{uuid.uuid4()}"
    stored = await event_store.append(stream, 0, [ev(i) for i in range(5)], META)
    relay = Relay(settings, pool)
    assert await relay.publish_pending() == 5
    checkpoint = await relay.checkpoint()

    assert await replay(settings, pool, stored[2].position, batch_size=2) == 3
    assert await relay.checkpoint() == checkpoint

    (msgs,) = (await published(settings)).values()
    # The original five, then positions 3..5 again, in order.
    assert ids(msgs) == [e.id for e in stored] + [e.id for e in stored[2:]]
    assert positions(msgs) == [e.position for e in stored] + [e.position for e in stored[2:]]
    assert await replay(settings, pool, stored[-1].position + 1) == 0


async def test_two_running_relays_publish_each_event_once_and_fail_over(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await ensure_topics(settings)
    first = Relay(settings, pool, election_interval=0.05, safety_interval=0.2)
    second = Relay(settings, pool, election_interval=0.05, safety_interval=0.2)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    run_first = asyncio.create_task(first.run(stop_first))
    run_second: asyncio.Task[None] | None = None
    try:
        await eventually(lambda: first.is_leader, "first relay leads")
        run_second = asyncio.create_task(second.run(stop_second))

        batch1 = await asyncio.gather(
            *[
                event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(i), ev(i)], META)
                for i in range(20)
            ]
        )
        last = max(e.position for evs in batch1 for e in evs)
        await eventually(lambda: at_checkpoint(first, last), "first batch published")
        assert first.is_leader and not second.is_leader
        got = ids(flat(await published(settings)))
        assert len(got) == 40 and sorted(got) == sorted(e.id for evs in batch1 for e in evs)

        stop_first.set()
        await asyncio.wait_for(run_first, 20)
        await eventually(lambda: second.is_leader, "second relay takes over")

        batch2 = await event_store.append(
            f"file-{uuid.uuid4()}", 0, [ev(i) for i in range(5)], META
        )
        await eventually(lambda: at_checkpoint(second, batch2[-1].position), "taken over")
        got = ids(flat(await published(settings)))
        assert len(got) == 45 and set(got) >= {e.id for e in batch2}
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.wait_for(asyncio.gather(run_first, *[t for t in [run_second] if t]), 20)


async def test_run_wakes_on_notify_not_on_the_timer(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await ensure_topics(settings)
    first = await event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(0)], META)
    relay = Relay(settings, pool, safety_interval=30.0)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        # The catch-up pass on becoming leader; after it the relay idles for up to 30 s.
        await eventually(lambda: at_checkpoint(relay, first[0].position), "catch-up")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        (second,) = await event_store.append(f"file-{uuid.uuid4()}", 0, [ev(1)], META)
        await eventually(lambda: at_checkpoint(relay, second.position), "notified", timeout=5)
        assert loop.time() - t0 < 5
    finally:
        stop.set()
        t0 = asyncio.get_running_loop().time()
        await asyncio.wait_for(running, 20)
    assert asyncio.get_running_loop().time() - t0 < 2, "run() did not stop promptly"
    assert {header(m.headers, "event-id") for m in flat(await published(settings))} == {
        first[0].id,
        second.id,
    }


async def test_after_a_busy_pass_it_lingers_and_the_next_pass_carries_what_came_meanwhile(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    # A linger far longer than the appends below take, so they must all go in one pass.
    relay = Relay(settings, pool, safety_interval=30.0, linger=5.0, linger_from=3)
    async with leading(relay):
        busy = await event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(0), ev(1), ev(2)], META)
        await eventually(lambda: at_checkpoint(relay, busy[-1].position), "the busy pass")
        await eventually(lambda: relay.lingered == 1, "the linger")
        passes = relay.passes
        later = [
            await event_store.append(f"file-{uuid.uuid4()}", 0, [ev(n)], META) for n in range(4)
        ]
        assert await relay.checkpoint() == busy[-1].position, "published during the linger"
        await eventually(lambda: at_checkpoint(relay, later[-1][0].position), "after the linger")
        # The checkpoint moves inside the pass, the counters after it: the pass of four
        # events is itself busy, so its end shows as the second linger (5 s, no pass meanwhile).
        await eventually(lambda: relay.lingered == 2, "the second linger")
        assert relay.passes == passes + 1  # the four appends went in one pass


async def test_a_small_pass_does_not_linger(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    relay = Relay(settings, pool, safety_interval=30.0, linger=30.0, linger_from=2)
    async with leading(relay):
        for n in range(3):  # one event per pass: each is published at once
            (one,) = await event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(n)], META)
            pos = one.position
            await eventually(lambda p=pos: at_checkpoint(relay, p), f"event {n}", timeout=5)
        assert relay.lingered == 0


async def test_the_linger_comes_from_the_settings_and_a_lone_event_is_not_delayed(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    # `cairn up`'s rule (after every pass), with a linger far longer than the test takes.
    env = {"CAIRN_RELAY_LINGER_MS": "30000", "CAIRN_RELAY_LINGER_FROM": "1"}
    told = Settings.from_env(env)
    relay = Relay(
        replace(
            settings,
            relay_linger_ms=told.relay_linger_ms,
            relay_linger_from=told.relay_linger_from,
        ),
        pool,
        safety_interval=60.0,
    )
    assert (relay.linger, relay.linger_from) == (30.0, 1)
    async with leading(relay):
        (lone,) = await event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(0)], META)
        await eventually(lambda: at_checkpoint(relay, lone.position), "the lone event", timeout=5)
        await eventually(lambda: relay.lingered == 1, "the linger after it")
        (next_one,) = await event_store.append(f"upload-{uuid.uuid4()}", 0, [ev(1)], META)
        # The next pass waits out the linger: well within it, nothing more is published.
        with pytest.raises(AssertionError, match="timed out"):
            await eventually(
                lambda: at_checkpoint(relay, next_one.position), "during the linger", timeout=2
            )
    assert Settings.from_env({}).relay_linger_ms == 20  # real Kafka: only after busy passes
    assert Settings.from_env({}).relay_linger_from == 16


async def test_unreachable_broker_keeps_the_checkpoint_and_recovers(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore, tmp_path: Path
) -> None:
    port = free_port()
    broker = EmbeddedKafka(port, log_path=tmp_path / "broker2.log")
    broker.start()
    settings = replace(settings, kafka_bootstrap=broker.bootstrap)
    producer = make_producer(settings, request_timeout_ms=2000, retry_backoff_ms=50)
    stop = asyncio.Event()
    running: asyncio.Task[None] | None = None
    try:
        await ensure_topics(settings)
        await producer.start()
        relay = Relay(
            settings,
            pool,
            producer=producer,
            safety_interval=0.2,
            backoff_initial=0.05,
            backoff_max=0.5,
        )
        stream = f"upload-{uuid.uuid4()}"
        (e1,) = await event_store.append(stream, 0, [ev(1)], META)
        assert await relay.publish_pending() == 1

        broker.stop()
        (e2,) = await event_store.append(stream, 1, [ev(2)], META)
        with pytest.raises(KafkaError):
            await relay.publish_pending()
        assert await relay.checkpoint() == e1.position

        # The run loop retries with backoff while the broker is down...
        running = asyncio.create_task(relay.run(stop))
        await eventually(lambda: relay.kafka_failures >= 2, "run() failing and retrying", 30)
        assert await relay.checkpoint() == e1.position
        # Paused while the broker comes back: Tansu auto-creates a topic on first produce, and
        # that racing our CreateTopics can leave it unreadable. Production creates topics
        # before any process starts, as we do here.
        stop.set()
        await asyncio.wait_for(running, 20)
        # Stopping abandoned the attempt in flight; let the producer expire it, so that it
        # cannot reach the new broker as well (that would be a legitimate duplicate, but
        # this test counts messages).
        await asyncio.wait_for(producer.flush(), 20)
        # ...and publishes once a broker (empty: memory-only) is back on the same address,
        # through the same producer, which reconnects by itself.
        broker = EmbeddedKafka(port, log_path=tmp_path / "broker2b.log")
        broker.start()
        await ensure_topics(settings)
        stop = asyncio.Event()
        running = asyncio.create_task(relay.run(stop))
        await eventually(lambda: at_checkpoint(relay, e2.position), "published after recovery", 60)
        stop.set()
        await asyncio.wait_for(running, 20)

        assert ids(flat(await published(settings))) == [e2.id]
        # What the restarted broker lost comes back by replay.
        assert await replay(settings, pool, 1) == 2
        (msgs,) = (await published(settings)).values()
        assert ids(msgs) == [e2.id, e1.id, e2.id]
    finally:
        stop.set()
        if running is not None:
            await asyncio.wait_for(running, 20)
        await producer.stop()
        broker.stop()


async def test_an_event_of_a_newer_schema_version_is_published_as_stored(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    """The relay does not interpret events: one a newer deployment stored at a schema
    version this code does not read goes out exactly as written (its version in the value
    and the header, its data untouched), for the consumers that read it, and the relay
    goes on. (Older versions it upcasts: tests/bus/store/test_upcasting.py.)"""
    await ensure_topics(settings)
    up = uuid.uuid4()
    newer_version = UploadChunkStored.schema_version + 1
    data = {"index": 0, "renamed_size": 10, "at": "2026-01-02T03:04:05+00:00"}
    stored = await event_store.append(
        f"upload-{up}",
        0,
        [
            NewEvent("UploadChunkStored", data, schema_version=newer_version),
            NewEvent("UploadChunkStored", {"index": 1}),
        ],
        META,
    )
    assert stored[0].schema_version == newer_version and stored[0].data == data
    relay = Relay(settings, pool)
    assert await relay.publish_pending() == 2
    assert await relay.checkpoint() == stored[-1].position
    msgs = flat(await published(settings, ("uploads",)))
    by_id = {header(m.headers, "event-id"): m for m in msgs}
    newer = by_id[stored[0].id]
    value = orjson.loads(newer.value)
    assert value["schema_version"] == newer_version
    assert value["data"] == data
    assert header(newer.headers, "schema-version") == str(newer_version)
    assert orjson.loads(by_id[stored[1].id].value)["schema_version"] == 1
