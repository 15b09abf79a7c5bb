"""The event handlers' consumer (handlers/runner.py) with an event it cannot handle yet in
one partition: held (of a newer schema version than it reads, retried on a timer backing
off) or failed (its follow-up not confirmed: here the blob store unavailable, retried after
RETRY_AFTER). Only that partition waits. Events of the other partitions are handled at
once, not after a pause of the whole consumer per batch; the waiting event is retried once
its wait is over and handled exactly once, in order with what follows it in its partition,
and committed. A rebalance keeps a wait of a partition that stays with the consumer, and
forgets (timer and all) the wait of one that goes to another; one given back in a later
rebalance, still at its event, waits out the rest; one taken away in the middle of a
batch is left to its new owner. The real embedded broker and
Postgres; only the follow-up decision is watched (a spy around
files_from_uploads.command_for that calls the real one), and the blob store is the real one
behind a switch that makes it unavailable (a port, not Postgres or Kafka)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer, TopicPartition

from bus.actors import wake
from bus.actors.host import ActorHost
from bus.blobs.errors import BlobStoreUnavailable
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, headers, make_consumer, make_producer
from bus.store.eventstore import PostgresEventStore
from domain import policies
from domain.errors import NewerSchema
from domain.events import EventMeta, NewEvent, RecordedEvent
from domain.files import AGGREGATE as FILES
from domain.ports import BlobStore
from domain.uploads import AGGREGATE as UPLOADS
from domain.uploads.commands import InitiateUpload
from domain.uploads.events import UploadAborted, UploadCompleted
from handlers import files_from_uploads, runner
from handlers.held import Holds
from handlers.runner import Handlers
from tests.rebalance import assert_still_idle, idle, join_and_leave, joined
from tests.system import wait_until

AT = datetime(2026, 1, 1, tzinfo=UTC)
KNOWN = UploadAborted.schema_version
HELD_PARTITION, OTHER_PARTITION = 0, 1
OTHERS = 5  # events of the other partition, one after the other


class Decisions:
    """What the handlers decided on each event (by id): "held" (of a newer schema version),
    "failed" (the blob store unavailable) or "handled" (its follow-up decided), and when
    (clock seconds), awaitable."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.at: list[float] = []
        self.changed = asyncio.Condition()

    async def record(self, event_id: str, outcome: str) -> None:
        async with self.changed:
            self.seen.append((event_id, outcome))
            self.at.append(time.monotonic())
            self.changed.notify_all()

    async def wait(
        self, event_id: str, outcome: str, timeout: float = 60.0, times: int = 1
    ) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: self.count(event_id, outcome) >= times)

    def count(self, event_id: str, outcome: str) -> int:
        return Counter(self.seen)[(event_id, outcome)]

    def attempts(self, event_id: str) -> list[float]:
        """When `event_id` was decided on (whatever the outcome), in order."""
        return [at for (i, _), at in zip(self.seen, self.at, strict=True) if i == event_id]


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
        except BlobStoreUnavailable:
            await watched.record(ev.id, "failed")
            raise
        await watched.record(ev.id, "handled")
        return cmd

    monkeypatch.setattr(files_from_uploads, "command_for", command_for)
    return watched


class Flaky:
    """The blob store port, unavailable (BlobStoreUnavailable on every read, as a store that
    cannot be reached answers) while `down`; otherwise the real store."""

    def __init__(self, real: BlobStore) -> None:
        self.real = real
        self.down = True

    def open_range(self, sha256: str, offset: int = 0, length: int | None = None) -> Any:
        if self.down:
            raise BlobStoreUnavailable("blob store down (test)")
        return self.real.open_range(sha256, offset, length)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def flaky(settings: Settings, pool: asyncpg.Pool) -> Iterator[tuple[Handlers, Flaky]]:
    """A handlers process whose blob store is down until told otherwise."""
    handlers = Handlers(settings, pool)
    blobs = Flaky(handlers.blobs)
    handlers.blobs = blobs
    yield handlers, blobs


@pytest_asyncio.fixture(loop_scope="session")
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_topics(settings)  # (the command bus needs its reply topic too)
    p = make_producer(settings)
    await p.start()
    yield p
    await p.stop()


async def publish(
    producer: AIOKafkaProducer,
    settings: Settings,
    ev: RecordedEvent,
    partition: int,
    topic: str = "uploads",
) -> int:
    """Publish `ev` to `partition` of `topic` (as the relay would, but to a partition of the
    test's choosing): its offset."""
    sent = await producer.send_and_wait(
        settings.topic(topic),
        value=orjson.dumps(ev.envelope()),
        key=ev.aggregate_id.encode(),
        partition=partition,
        headers=headers(**{"event-id": ev.id, "event-type": ev.type}),
    )
    return int(sent.offset)


async def aborted(
    store: PostgresEventStore,
    producer: AIOKafkaProducer,
    settings: Settings,
    partition: int,
    *,
    schema_version: int = KNOWN,
    topic: str = "uploads",
) -> tuple[RecordedEvent, int]:
    """An UploadAborted (calls for no follow-up) on a stream of its own, stored and
    published to `partition` of the uploads topic (or `topic`): the event and its offset."""
    [ev] = await store.append(
        f"upload-{uuid.uuid4()}",
        0,
        [NewEvent("UploadAborted", {"at": AT.isoformat()}, schema_version=schema_version)],
        EventMeta(AT, owner="ann"),
    )
    return ev, await publish(producer, settings, ev, partition, topic)


async def completed(
    store: PostgresEventStore,
    producer: AIOKafkaProducer,
    settings: Settings,
    blobs: BlobStore,
    partition: int,
) -> tuple[RecordedEvent, int]:
    """A whole upload of a few bytes, completed, with no file yet: its follow-up (a
    CreateFile) reads the bytes from the blob store (their type is not declared). The
    UploadCompleted is published to `partition`: the event and its offset."""

    async def body() -> AsyncIterator[bytes]:
        yield b"plain bytes"

    sha, size = await blobs.put_stream(body())
    init = InitiateUpload(
        aggregate_id=str(uuid.uuid4()),
        caller="ann",
        at=AT,
        file_name="p.txt",
        file_size=size,
        chunk_size=size,
        mode="stream",
    )
    whole = policies.initiate_complete(init, [{"sha256": sha, "size": size}], sha)
    recorded = await store.append(
        UPLOADS.stream_id(init.aggregate_id),
        0,
        UPLOADS.decide(None, whole),
        EventMeta(AT, owner="ann"),
    )
    assert recorded[-1].type == UploadCompleted.type
    return recorded[-1], await publish(producer, settings, recorded[-1], partition)


async def committed(settings: Settings, group_id: str, tp: TopicPartition) -> int | None:
    consumer = make_consumer(settings, group_id=group_id)
    await consumer.start()
    try:
        return cast(int | None, await consumer.committed(tp))
    finally:
        await consumer.stop()


async def now(value: Any) -> Any:
    """`value`, awaitable (for wait_until, which polls an async predicate)."""
    return value


@asynccontextmanager
async def running(handlers: Handlers) -> AsyncIterator[Handlers]:
    stop = asyncio.Event()
    task = asyncio.create_task(handlers.run(stop))
    try:
        yield handlers
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


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
    async with running(Handlers(settings, pool)) as handlers:
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
    # Each once: never twice, none lost; nothing held any more.
    assert decisions.count(newer.id, "handled") == 1
    assert decisions.count(after.id, "handled") == 1
    assert all(decisions.count(ev.id, "handled") == 1 for ev in others)
    # And committed past both: a next process starts after them.
    tp = TopicPartition(settings.topic("uploads"), HELD_PARTITION)
    assert await committed(settings, handlers.group_id, tp) == after_offset + 1


async def test_a_failed_event_waits_in_its_partition_until_the_fault_is_gone(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    producer: AIOKafkaProducer,
    decisions: Decisions,
    flaky: tuple[Handlers, Flaky],
) -> None:
    handlers, blobs = flaky
    # A completion whose file needs its bytes read (the blob store is down), and an event
    # behind it in its partition.
    failing, _ = await completed(event_store, producer, settings, blobs.real, HELD_PARTITION)
    after, after_offset = await aborted(event_store, producer, settings, HELD_PARTITION)
    host = ActorHost(settings, pool)  # (answers the CreateFile once the store is back)
    stop_host = asyncio.Event()
    hosting = asyncio.create_task(host.run(stop_host))
    try:
        async with running(handlers):
            await decisions.wait(failing.id, "failed")
            # Meanwhile the other partition's events are handled, each as it comes.
            others = []
            for _ in range(3):
                ev, _ = await aborted(event_store, producer, settings, OTHER_PARTITION)
                await decisions.wait(ev.id, "handled", timeout=30)
                others.append(ev)
            # The failed event is retried, RETRY_AFTER after each failure (not sooner:
            # its partition is paused meanwhile), and nothing behind it is handled first.
            await decisions.wait(failing.id, "failed", times=2, timeout=30)
            first, second = decisions.attempts(failing.id)[:2]
            assert second - first >= runner.RETRY_AFTER - 0.05, (first, second)
            assert decisions.count(after.id, "handled") == 0
            assert TopicPartition(settings.topic("uploads"), HELD_PARTITION) in handlers.waiting

            # The store is back: the event goes through at its next retry, then the one
            # behind it (strictly in order).
            blobs.down = False
            await decisions.wait(after.id, "handled", timeout=30)
            handled = [i for i, outcome in decisions.seen if outcome == "handled"]
            assert handled.index(failing.id) < handled.index(after.id)
            assert not handlers.waiting
    finally:
        stop_host.set()
        await asyncio.wait_for(hosting, 60)
    # Each once; the follow-up was applied (the file exists); committed past both.
    assert decisions.count(failing.id, "handled") == 1
    assert decisions.count(after.id, "handled") == 1
    assert all(decisions.count(ev.id, "handled") == 1 for ev in others)
    assert isinstance(failing.payload, UploadCompleted)
    assert await event_store.read_stream(FILES.stream_id(failing.payload.file_id))
    tp = TopicPartition(settings.topic("uploads"), HELD_PARTITION)
    assert await committed(settings, handlers.group_id, tp) == after_offset + 1


# Long enough to outlast two rebalances and the idle gate's pause (each a few seconds on the
# embedded broker with the suite's session timeout): what the tests do before the first
# retries takes some 6 s (a later rebalance, whose check wants 5 s of the wait left) and 8 s
# (the rebalance that keeps waits). The tests last about this long.
LONG_WAIT = 14.0


async def test_a_rebalance_keeps_the_waits_of_partitions_that_stay_and_drops_the_others(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    producer: AIOKafkaProducer,
    decisions: Decisions,
    flaky: tuple[Handlers, Flaky],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka forgets a partition's pause when it revokes it. A partition that comes back
    to the same consumer in the same rebalance must still wait at its event (not fetched at
    once from the committed offset: the failed event retried early, the held one fetched
    early); one that goes to another consumer must leave no timer behind (its new owner may
    go past the event, and a stale wait would keep the partition paused when it comes back
    and the idle gate wakes)."""
    handlers, blobs = flaky
    monkeypatch.setattr(runner, "RETRY_AFTER", LONG_WAIT)
    handlers.holds = Holds("handlers", first=LONG_WAIT, most=LONG_WAIT)
    uploads = settings.topic("uploads")
    # In each partition of the uploads topic an event that waits (held or failed: each
    # kind both in an even and an odd partition, and in the first half and the second, so
    # that the consumer that stays keeps both kinds however the group splits them) and an
    # event behind it.
    waiting: dict[TopicPartition, RecordedEvent] = {}
    offsets: dict[TopicPartition, int] = {}
    behind: dict[TopicPartition, RecordedEvent] = {}
    for p, kind in enumerate(["held", "failed", "failed", "held"]):
        tp = TopicPartition(uploads, p)
        if kind == "held":
            waiting[tp], offsets[tp] = await aborted(
                event_store, producer, settings, p, schema_version=KNOWN + 1
            )
        else:
            waiting[tp], offsets[tp] = await completed(
                event_store, producer, settings, blobs.real, p
            )
        behind[tp], _ = await aborted(event_store, producer, settings, p)

    async with running(handlers):
        for tp, ev in waiting.items():
            await decisions.wait(ev.id, "held" if tp.partition in (0, 3) else "failed")
        assert set(handlers.waiting) == set(waiting)
        gate = await wait_until(lambda: now(handlers.gate))
        consumer = gate.consumer
        everything = consumer.assignment()

        # A second consumer of the group joins: the group is split between the two.
        async with joined(settings, consumer, handlers.group_id) as other:
            ours, theirs = consumer.assignment(), other.assignment()
            stayed = {tp for tp in waiting if tp in ours}
            went = {tp for tp in waiting if tp in theirs}
            assert stayed and went, (ours, theirs)
            # No timer is left for a partition that went: nothing could resume it.
            assert set(handlers.waiting) == stayed
            # By the time an event of a partition this consumer holds (of the fetches
            # topic: the handlers read both) is handled, the partitions that stayed would
            # have been fetched as well had the rebalance unpaused them.
            beacon_tp = next(tp for tp in ours if tp.topic != uploads)
            beacon, _ = await aborted(
                event_store, producer, settings, beacon_tp.partition, topic="fetches"
            )
            await decisions.wait(beacon.id, "handled", timeout=30)
            for tp in stayed:
                assert len(decisions.attempts(waiting[tp].id)) == 1, tp  # not retried early
                assert decisions.count(behind[tp].id, "handled") == 0
                assert tp in consumer.paused()

            # The other consumer handles the waiting events of its partitions (as a
            # process of a newer version would) and leaves.
            await other.commit({tp: offsets[tp] + 1 for tp in went})

        await wait_until(lambda: now(consumer.assignment() == everything), timeout=60)
        # What came back starts after those events. An event of the fetches topic wakes the
        # gate if it went idle during the rebalance (as in the test of a later rebalance
        # below): a partition assigned to an idle gate is paused with the rest, and nothing
        # was appended for the events behind the waiting ones, so they would be fetched only
        # at the gate's next peek (PEEK_EVERY_BACKGROUND, 10 s), most of LONG_WAIT.
        beacon, _ = await aborted(
            event_store, producer, settings, beacon_tp.partition, topic="fetches"
        )
        await decisions.wait(beacon.id, "handled", timeout=30)
        for tp in went:
            await decisions.wait(behind[tp].id, "handled", timeout=30)
            assert len(decisions.attempts(waiting[tp].id)) == 1
        assert set(handlers.waiting) == stayed
        # Idle: the gate pauses every partition, and an event in a partition that came back
        # wakes it. That partition is fetched at once, not kept paused by a wait it had
        # before it went away. (The append wakes the gate, which pauses them all again
        # once idle; a gate idle through the rebalance kept its pauses, see the test of
        # an idle consumer below.)
        await event_store.append(
            f"upload-{uuid.uuid4()}",
            0,
            [NewEvent("UploadAborted", {"at": AT.isoformat()})],
            EventMeta(AT, owner="ann"),
        )

        async def idle() -> bool:
            return gate.paused and consumer.paused() == consumer.assignment()

        await wait_until(idle, timeout=30)
        tp = next(iter(went))
        began = time.monotonic()
        later, _ = await aborted(event_store, producer, settings, tp.partition)
        await decisions.wait(later.id, "handled", timeout=LONG_WAIT)
        assert time.monotonic() - began < 5, "kept paused by a stale wait"

        # The partitions that stayed are retried when their wait is over, not before.
        for tp in stayed:
            first_at = decisions.attempts(waiting[tp].id)[0]
            await decisions.wait(
                waiting[tp].id,
                "held" if tp.partition in (0, 3) else "failed",
                times=2,
                timeout=LONG_WAIT + 10,
            )
            retried_at = decisions.attempts(waiting[tp].id)[1]
            assert retried_at - first_at >= LONG_WAIT - 0.1, (tp, retried_at - first_at)
            assert decisions.count(behind[tp].id, "handled") == 0


async def test_a_partition_taken_away_during_a_batch_is_left_to_its_new_owner(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    producer: AIOKafkaProducer,
    decisions: Decisions,
    flaky: tuple[Handlers, Flaky],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rebalance while a batch is being handled (aiokafka rebalances beside it) may take
    the partition of an event that then fails: the consumer can neither rewind nor pause a
    partition it no longer holds (both raise), and need not (its new owner starts at the
    group's offset, before that event). The batch goes on with the rest: the failed
    events of the partitions it kept wait there as usual."""
    handlers, blobs = flaky
    uploads = settings.topic("uploads")
    waiting: dict[TopicPartition, RecordedEvent] = {}
    offsets: dict[TopicPartition, int] = {}
    for p in range(4):
        tp = TopicPartition(uploads, p)
        waiting[tp], offsets[tp] = await completed(event_store, producer, settings, blobs.real, p)
    # The first decision of the first batch waits until the group has been split.
    started, split_done = asyncio.Event(), asyncio.Event()
    decide = files_from_uploads.command_for

    async def command_for(ev: RecordedEvent, *args: Any) -> Any:
        started.set()
        await split_done.wait()
        return await decide(ev, *args)

    monkeypatch.setattr(files_from_uploads, "command_for", command_for)
    caplog.set_level(logging.ERROR)
    async with running(handlers):
        await asyncio.wait_for(started.wait(), 60)
        gate = await wait_until(lambda: now(handlers.gate))
        consumer = gate.consumer
        async with joined(settings, consumer, handlers.group_id) as other:
            ours, theirs = consumer.assignment(), other.assignment()
            went = {tp for tp in waiting if tp in theirs}
            stayed = {tp for tp in waiting if tp in ours}
            assert went and stayed
            split_done.set()
            # The batch goes on: each event of a partition kept fails and waits there,
            # retried after RETRY_AFTER.
            for tp in stayed:
                await decisions.wait(waiting[tp].id, "failed", times=2, timeout=30)
                first, second = decisions.attempts(waiting[tp].id)[:2]
                assert second - first >= runner.RETRY_AFTER - 0.05, (tp, first, second)
            assert set(handlers.waiting) == stayed
            # Nor is anything of the partitions that went committed past their events.
            for tp in went:
                assert (await other.committed(tp) or 0) <= offsets[tp]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_an_idle_consumer_stays_paused_through_a_rebalance_and_an_event_wakes_it(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    producer: AIOKafkaProducer,
    decisions: Decisions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka forgets its pauses when a rebalance revokes and assigns the partitions (as
    the waits above): the idle gate pauses them again, or the consumer fetches every
    partition while the gate believes it idle, until its next peek (10 s). An event
    appended after the rebalance still wakes it at once (no peek can, here)."""
    monkeypatch.setattr(wake, "IDLE_AFTER", 0.3)
    monkeypatch.setattr(wake, "PEEK_EVERY_BACKGROUND", 600.0)
    handlers = Handlers(settings, pool)
    async with running(handlers):
        gate = await wait_until(lambda: now(handlers.gate), timeout=60)
        await wait_until(lambda: idle(gate), timeout=30)
        await join_and_leave(settings, gate.consumer, handlers.group_id)
        await assert_still_idle(gate)

        began = time.monotonic()
        ev, _ = await aborted(event_store, producer, settings, OTHER_PARTITION)
        await decisions.wait(ev.id, "handled", timeout=30)
        assert time.monotonic() - began < 5, "the event waited for a peek"


async def test_a_wait_is_kept_when_its_partition_comes_back_in_a_later_rebalance(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    producer: AIOKafkaProducer,
    decisions: Decisions,
    flaky: tuple[Handlers, Flaky],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A partition whose event waits (failed, or held), taken by another consumer of the
    group and given back to this one in a later rebalance (the other left without
    handling the event), still waits out the rest of its time there: its event is tried
    again once that is over, not at once when the partition comes back (nor anything
    behind it first)."""
    handlers, blobs = flaky
    monkeypatch.setattr(runner, "RETRY_AFTER", LONG_WAIT)
    handlers.holds = Holds("handlers", first=LONG_WAIT, most=LONG_WAIT)
    uploads = settings.topic("uploads")
    kinds = {0: "held", 1: "failed", 2: "failed", 3: "held"}  # (see the test above)
    waiting: dict[TopicPartition, RecordedEvent] = {}
    behind: dict[TopicPartition, RecordedEvent] = {}
    for p, kind in kinds.items():
        tp = TopicPartition(uploads, p)
        if kind == "held":
            waiting[tp], _ = await aborted(
                event_store, producer, settings, p, schema_version=KNOWN + 1
            )
        else:
            waiting[tp], _ = await completed(event_store, producer, settings, blobs.real, p)
        behind[tp], _ = await aborted(event_store, producer, settings, p)

    async with running(handlers):
        for tp, ev in waiting.items():
            await decisions.wait(ev.id, kinds[tp.partition])
        gate = await wait_until(lambda: now(handlers.gate))
        consumer = gate.consumer
        everything = consumer.assignment()
        # A second consumer joins (the first rebalance: it takes its share, waits and
        # all) and leaves without committing anything (the second: everything comes
        # back here, still at the waiting events).
        async with joined(settings, consumer, handlers.group_id) as other:
            went = {tp for tp in waiting if tp in other.assignment()}
            assert {kinds[tp.partition] for tp in went} == {"held", "failed"}, went
        await wait_until(lambda: now(consumer.assignment() == everything), timeout=60)
        first = {tp: decisions.attempts(ev.id)[0] for tp, ev in waiting.items()}
        # (Back well within the wait, or this would show nothing.)
        assert time.monotonic() - max(first.values()) < LONG_WAIT - 5

        # An event of the fetches topic wakes the gate if it went idle, so the partitions
        # that came back are fetched (and, were their waits forgotten, tried again) now.
        beacon_tp = next(tp for tp in everything if tp.topic != uploads)
        beacon, _ = await aborted(
            event_store, producer, settings, beacon_tp.partition, topic="fetches"
        )
        await decisions.wait(beacon.id, "handled", timeout=30)

        # Each waiting event is tried again when its wait is over, not before; nothing
        # behind it meanwhile.
        for tp, ev in waiting.items():
            await decisions.wait(ev.id, kinds[tp.partition], times=2, timeout=LONG_WAIT + 10)
            retried = decisions.attempts(ev.id)[1]
            assert retried - first[tp] >= LONG_WAIT - 0.1, (tp, tp in went, retried - first[tp])
            assert decisions.count(behind[tp].id, "handled") == 0, tp
