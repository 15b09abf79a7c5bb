"""The event handlers' consumer (handlers/runner.py) with an event it cannot handle yet (an
event of a newer schema version than it reads: held, retried on a timer) in one partition:
only that partition waits. Events of the other partitions are handled at once, not after a
pause of the whole consumer per batch; the held event is retried once its wait is over and
handled exactly once, in order with what follows it in its partition, and committed. The
real embedded broker and Postgres; only the follow-up decision is watched (a spy around
files_from_uploads.command_for that calls the real one)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer, TopicPartition

from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, headers, make_consumer, make_producer
from bus.store.eventstore import PostgresEventStore
from domain.errors import NewerSchema
from domain.events import EventMeta, NewEvent, RecordedEvent
from domain.uploads.events import UploadAborted
from handlers import files_from_uploads
from handlers.runner import Handlers

AT = datetime(2026, 1, 1, tzinfo=UTC)
KNOWN = UploadAborted.schema_version
HELD_PARTITION, OTHER_PARTITION = 0, 1
OTHERS = 5  # events of the other partition, one after the other


class Decisions:
    """What the handlers decided on each event (by id): "held" (of a newer schema version)
    or "handled" (its follow-up decided), awaitable."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.changed = asyncio.Condition()

    async def record(self, event_id: str, outcome: str) -> None:
        async with self.changed:
            self.seen.append((event_id, outcome))
            self.changed.notify_all()

    async def wait(self, event_id: str, outcome: str, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: (event_id, outcome) in self.seen)

    def count(self, event_id: str, outcome: str) -> int:
        return Counter(self.seen)[(event_id, outcome)]


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> Decisions:
    watched = Decisions()
    real = files_from_uploads.command_for

    async def command_for(ev: RecordedEvent, *args: Any) -> Any:
        try:
            cmd = await real(ev, *args)
        except NewerSchema:
            await watched.record(ev.id, "held")
            raise
        await watched.record(ev.id, "handled")
        return cmd

    monkeypatch.setattr(files_from_uploads, "command_for", command_for)
    return watched


@pytest_asyncio.fixture(loop_scope="session")
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_topics(settings)  # (the command bus needs its reply topic too)
    p = make_producer(settings)
    await p.start()
    yield p
    await p.stop()


async def aborted(
    store: PostgresEventStore,
    producer: AIOKafkaProducer,
    settings: Settings,
    partition: int,
    *,
    schema_version: int = KNOWN,
) -> tuple[RecordedEvent, int]:
    """An UploadAborted (calls for no follow-up) on a stream of its own, stored and
    published to `partition` of the uploads topic: the event and its offset."""
    [ev] = await store.append(
        f"upload-{uuid.uuid4()}",
        0,
        [NewEvent("UploadAborted", {"at": AT.isoformat()}, schema_version=schema_version)],
        EventMeta(AT, owner="ann"),
    )
    sent = await producer.send_and_wait(
        settings.topic("uploads"),
        value=orjson.dumps(ev.envelope()),
        key=ev.aggregate_id.encode(),
        partition=partition,
        headers=headers(**{"event-id": ev.id, "event-type": ev.type}),
    )
    return ev, sent.offset


async def test_a_held_event_delays_only_its_own_partition(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    producer: AIOKafkaProducer,
    decisions: Decisions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An event of the next schema version: held (retried after 1 s, then 2 s, ...).
    newer, _ = await aborted(
        event_store, producer, settings, HELD_PARTITION, schema_version=KNOWN + 1
    )
    handlers = Handlers(settings, pool)
    stop = asyncio.Event()
    task = asyncio.create_task(handlers.run(stop))
    try:
        await decisions.wait(newer.id, "held")
        # Meanwhile the other partition's events are handled at once, each as it comes.
        # The consumer used to sleep 1 s after every batch that met the held event (and
        # every batch did, the partition being rewound to it), so each waited up to 1 s:
        # these took some 5 s; now the time of a few polls.
        batches = handlers.batches
        others, took = [], []
        for _ in range(OTHERS):
            began = time.monotonic()
            ev, _ = await aborted(event_store, producer, settings, OTHER_PARTITION)
            await decisions.wait(ev.id, "handled", timeout=30)
            took.append(time.monotonic() - began)
            others.append(ev)
        # The one bound here in seconds, with room for a loaded machine: the consumer-wide
        # pause that was cost at least 1 s per event by construction (its sleep); handled
        # at once, they take a few polls (about 0.1 s each when the machine is quiet).
        assert sum(took) / len(took) < 0.8, f"events of another partition took {took} s each"
        # Nor is the held event's partition fetched again and again meanwhile (a batch
        # for each of those events, and one or two when the held event's wait is over).
        assert handlers.batches - batches <= 2 * (OTHERS + 2), handlers.batches - batches
        assert decisions.count(newer.id, "handled") == 0  # still held, not skipped
        assert TopicPartition(settings.topic("uploads"), HELD_PARTITION) in handlers.waiting

        # A process that reads the newer version runs: the held event is handled once its
        # wait is over, then the event behind it in its partition (strictly in order).
        monkeypatch.setattr(UploadAborted, "schema_version", KNOWN + 1)
        after, after_offset = await aborted(
            event_store, producer, settings, HELD_PARTITION, schema_version=KNOWN + 1
        )
        # Within its back-off (1 s, then 2 s) of the change, not at the idle gate's next
        # peek (10 s): the partition is resumed when its wait is over.
        await decisions.wait(after.id, "handled", timeout=8)
        handled = [i for i, outcome in decisions.seen if outcome == "handled"]
        assert handled.index(newer.id) < handled.index(after.id)
        assert not handlers.waiting and handlers.holds.waiting() == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    # Each once: never twice, none lost; nothing held any more.
    assert decisions.count(newer.id, "handled") == 1
    assert decisions.count(after.id, "handled") == 1
    assert all(decisions.count(ev.id, "handled") == 1 for ev in others)
    # And committed past both: a next process starts after them.
    consumer = make_consumer(settings, group_id=handlers.group_id)
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic("uploads"), HELD_PARTITION)
        assert await consumer.committed(tp) == after_offset + 1
    finally:
        await consumer.stop()
