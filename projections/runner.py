"""The projector process: consumes domain events from Kafka and keeps the read models current.

Exactly-once effect from at-least-once delivery: each poll batch is applied in ONE Postgres
transaction (effects + per-stream checkpoints, see `Checkpoints` in projections/base.py),
and Kafka offsets are committed only after that transaction commits. A crash between the
two redelivers the batch, and the checkpoints turn the redelivery into no-ops.

Failures are split in two. Transient ones (Postgres unreachable, deadlock, serialization)
roll the batch back and retry it with backoff, committing nothing to Kafka, so no event is
lost. Deterministic ones (a message that is not an event, an event whose data the
projection cannot apply) are logged, counted and skipped, so one bad message cannot stall
the projection forever; the event store still holds the truth for a later rebuild.

One kind is neither: an event of a known type at a schema version NEWER than this code
reads (written by a newer deployment during a rolling upgrade, or before a rollback).
Skipping it would lose it for the read model, reading it could misread it. The projector
holds its partition there instead: what came before it is applied and committed, nothing
from it on; the partition is paused (the other partitions go on), the hold is logged once,
counted in `cairn_projection_partitions_held` and recorded in `readmodel.schema_holds`
(projections/holds.py, for /ready). A process that knows the version (the upgrade done)
starts that partition from the held event, as committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from bus.actors.wake import GatedListener, IdleGate, gated_while_idle
from bus.aio import Backoff, Stopped, sleep_unless_stopped, unless_stopped
from bus.config import metrics
from bus.config.metrics import PROJECTION_DUPLICATES_SKIPPED as DUPLICATES_SKIPPED
from bus.config.metrics import PROJECTION_EVENTS_APPLIED as EVENTS_APPLIED
from bus.config.metrics import PROJECTION_LAG_SECONDS as PROJECTION_LAG
from bus.config.metrics import PROJECTION_MESSAGES_SKIPPED as MESSAGES_SKIPPED
from bus.config.metrics import PROJECTION_PARTITIONS_HELD as PARTITIONS_HELD
from bus.config.settings import Settings
from bus.kafka.broker import (
    BATCH_TIMEOUT_MS,
    current_message,
    long_poll,
    make_broker,
    observe_batch,
    raw_records,
    subscriber_options,
)
from bus.kafka.clients import ensure_topics, header
from bus.store.eventstore import PostgresEventStore
from domain.errors import NewerSchema
from domain.events import RecordedEvent
from projections import holds
from projections.base import (
    PROJECTION_LOCK,
    TRANSIENT_ERRORS,
    Checkpoints,
    Projection,
    announce,
    apply_checkpointed,
    deferred_usage,
    record_status,
)
from projections.pipelined import pipelined
from projections.rebuild import PROJECTIONS

log = logging.getLogger("cairn.projections")


MAX_BACKOFF = 5.0


@dataclass
class _Outcome:
    applied: dict[str, int]
    duplicates: dict[str, int]
    # Per projection, the applied event with the highest position (for status and lag).
    last: dict[str, RecordedEvent]
    poisoned: int = 0


class _Poison(Exception):
    """A deterministic failure while applying a batch without isolation."""


class _Held(Exception):
    """Applying `event` met an event of a newer schema version (itself, or one filling the
    gap before it): its partition must wait before it."""

    def __init__(self, event: RecordedEvent, error: NewerSchema) -> None:
        super().__init__(str(error))
        self.event = event
        self.error = error


@dataclass
class _Hold:
    """A partition held before the message at `offset` (see the module docstring)."""

    offset: int
    event: RecordedEvent
    error: NewerSchema


class Projector:
    """Runs `projections` (default: all registered) off their aggregates' topics."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        projections: Iterable[Projection] | None = None,
        *,
        max_batch: int = 500,
    ) -> None:
        if projections is None:
            projections = PROJECTIONS.values()
        self.settings = settings
        self.pool = pool
        self.projections = list(projections)
        self.max_batch = max_batch
        self.event_store = PostgresEventStore(pool)
        self.group_id = f"{settings.topic_prefix}-projector"
        self.topics = sorted({settings.topic(a) for p in self.projections for a in p.aggregates})
        # Next offset whose effect is committed in Postgres, per partition; bounded by the
        # partition count. Lets callers (tests, health checks) await progress.
        self._processed: dict[tuple[str, int], int] = {}
        self._progress = asyncio.Condition()
        self._last_batch = 0.0
        self.batches = 0  # bumped at the start and end of every batch (the idle gate)
        # Partitions held before an event of a newer schema version, and the holds already
        # logged (a partition taken away and given back meets its event again).
        self.held: dict[TopicPartition, _Hold] = {}
        self._logged: set[tuple[str, int, int]] = set()
        self.consumer: Any = None
        self.gate: IdleGate | None = None  # while running

    # ---- progress --------------------------------------------------------------------

    def processed_offset(self, topic: str, partition: int) -> int:
        """The next offset of (topic, partition) not yet applied (0 = nothing yet)."""
        return self._processed.get((topic, partition), 0)

    async def wait_held(self, topic: str, partition: int, timeout: float = 30.0) -> None:
        """Wait until (topic, partition) is held before an event of a newer schema version."""
        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(lambda: TopicPartition(topic, partition) in self.held)

    async def wait_processed(
        self, topic: str, partition: int, offset: int, timeout: float = 30.0
    ) -> None:
        """Wait until the message at `offset` has been applied (or skipped) and committed."""
        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(lambda: self.processed_offset(topic, partition) > offset)

    # ---- the loop --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_topics(self.settings, self.topics)
        broker = make_broker(self.settings, "projector")
        subscriber = self.declare(broker, stop)
        idle = asyncio.create_task(self._zero_lag_while_idle(stop))
        try:
            # Joining the consumer group can take seconds: give up at once when stopped.
            await unless_stopped(broker.start(), stop)
            self.consumer = subscriber.consumer
            # Idle: stop fetching until an event is appended or published. A held partition
            # stays paused when the gate wakes the others.
            async with gated_while_idle(
                subscriber.consumer,
                self.listener,
                self.pool,
                self.settings,
                stop,
                lambda: self.batches,
                keep_paused=self.held.keys,
            ) as gate:
                self.gate = gate
                log.info("projector started", extra={"topics": self.topics, "group": self.group_id})
                await stop.wait()
        except Stopped:
            pass
        finally:
            self.gate = None
            idle.cancel()
            with contextlib.suppress(Exception):
                await broker.stop()
            self._release(set(self.held))
            log.info("projector stopped")

    def declare(self, broker: KafkaBroker, stop: asyncio.Event) -> Any:
        """Declare the event subscriber on `broker`: one Postgres transaction per poll batch,
        offsets committed only after it. Returns the subscriber."""
        projector = self

        class Listener(GatedListener):
            # (The idle gate's pauses, which a rebalance drops, are made again by the
            # GatedListener on each assignment.)
            async def revoked(self, revoked: set[TopicPartition]) -> None:
                # A held partition taken away is its next owner's to apply or hold.
                projector._release(set(revoked))

        self.listener = Listener()
        subscriber = long_poll(
            broker.subscriber(
                *self.topics,
                batch=True,
                group_id=self.group_id,
                ack_policy=AckPolicy.MANUAL,
                max_records=self.max_batch,
                max_poll_records=self.max_batch,
                batch_timeout_ms=BATCH_TIMEOUT_MS,
                decoder=raw_records,
                listener=self.listener,
                title="projector",
                description="Domain events into the Postgres read models.",
                **subscriber_options(self.settings),
            )
        )

        # Options passed as **kwargs make the decorator untyped for mypy.
        @subscriber  # type: ignore[untyped-decorator]
        async def on_events(records: Any) -> None:
            msg = current_message(broker)
            self.batches += 1
            try:
                await handle(records, msg)
            finally:
                self.batches += 1  # a long batch counts as activity until its end

        async def handle(records: Any, msg: KafkaMessage) -> None:
            self._last_batch = time.monotonic()
            observe_batch(self.group_id, msg.consumer, records)
            messages = sorted(records, key=lambda m: (m.topic, m.partition, m.offset))
            if not await self._apply_with_retry(messages, stop):
                # Stopped while the batch could not be applied: rewind, Kafka redelivers it.
                with contextlib.suppress(Exception):
                    await msg.nack()
                return
            offsets: dict[TopicPartition, int] = {}
            for m in messages:
                offsets[TopicPartition(m.topic, m.partition)] = m.offset + 1
            consumer: Any = msg.consumer
            for tp, hold in self.held.items():
                if tp in offsets:
                    # Nothing from the held event on is committed (the commit below takes
                    # the consumer's positions), nor fetched again by this process.
                    offsets[tp] = hold.offset
                    consumer.seek(tp, hold.offset)
                    consumer.pause(tp)
            try:
                await msg.ack()
            except KafkaError as e:
                # A rebalance took the partitions away: the new owner gets the batch
                # again and skips it through the checkpoints. Nothing to undo.
                log.warning("offset commit failed, batch will be redelivered: %s", e)
            await self._mark_processed(offsets)

        return subscriber

    async def _zero_lag_while_idle(self, stop: asyncio.Event) -> None:
        """The lag gauge reads 0 once no batch has come for a second: idle at the head of
        every assigned partition, nothing is lagging."""
        while not await sleep_unless_stopped(stop, 1.0):
            if time.monotonic() - self._last_batch >= 1.0:
                for p in self.projections:
                    PROJECTION_LAG.labels(p.name).set(0)
                metrics.observe_idle(self.group_id, self.topics)

    async def _mark_processed(self, offsets: dict[TopicPartition, int]) -> None:
        async with self._progress:
            for tp, nxt in offsets.items():
                key = (tp.topic, tp.partition)
                self._processed[key] = max(nxt, self._processed.get(key, 0))
            self._progress.notify_all()

    def _parse(
        self, messages: Sequence[ConsumerRecord]
    ) -> list[tuple[ConsumerRecord, RecordedEvent]]:
        events = []
        for m in messages:
            try:
                if m.value is None:
                    raise ValueError("empty message")
                env = orjson.loads(m.value)
                if not isinstance(env, dict):
                    raise ValueError("not a JSON object")
                events.append(
                    (m, RecordedEvent.from_envelope(env, header(m.headers, "traceparent")))
                )
            except Exception as e:
                MESSAGES_SKIPPED.labels("malformed").inc()
                log.error(
                    "skipping malformed message %s[%d]@%d: %r",
                    m.topic,
                    m.partition,
                    m.offset,
                    e,
                )
        return events

    async def _apply_with_retry(
        self, messages: Sequence[ConsumerRecord], stop: asyncio.Event
    ) -> bool:
        """Apply a batch, retrying transient failures; False if stopped before success.
        Events of a held partition from its hold on are left out (see `_unheld`)."""
        parsed = self._parse(messages)
        backoff = Backoff(0.1, MAX_BACKOFF, jitter=False)
        isolate = False
        while True:
            events = self._unheld(parsed)
            # Raced against `stop`: a batch can wait a long time for the projection lock
            # (a rebuild holds it exclusively). Cancelling rolls the transaction back and
            # leaves the offsets uncommitted, so the batch is simply redelivered later.
            try:
                outcome = await unless_stopped(self._apply_batch(events, isolate=isolate), stop)
                break
            except Stopped:
                return False
            except _Held as held:
                # Met while applying (a gap filled from the store): hold there, try again.
                m = next(m for m, ev in parsed if ev is held.event)
                await self._hold(m, held.event, held.error)
            except _Poison:
                # Fast path failed on a bad event: redo the batch one savepoint per event,
                # so only the bad ones are skipped.
                isolate = True
            except TRANSIENT_ERRORS as e:
                delay = backoff.next()
                log.warning("projection batch failed, retrying in %.1fs: %r", delay, e)
                if await sleep_unless_stopped(stop, delay):
                    return False
        now = datetime.now(UTC)
        for name, n in outcome.applied.items():
            EVENTS_APPLIED.labels(name).inc(n)
        for name, n in outcome.duplicates.items():
            DUPLICATES_SKIPPED.labels(name).inc(n)
        for name, ev in outcome.last.items():
            PROJECTION_LAG.labels(name).set(max((now - ev.occurred_at).total_seconds(), 0.0))
        if outcome.poisoned:
            MESSAGES_SKIPPED.labels("unappliable").inc(outcome.poisoned)
        return True

    async def _apply_batch(self, events: Sequence[RecordedEvent], *, isolate: bool) -> _Outcome:
        out = _Outcome(applied={}, duplicates={}, last={})
        async with self.pool.acquire() as conn, conn.transaction():
            # Shared: live batches run side by side; a rebuild (exclusive) waits for them
            # and they wait for it.
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", PROJECTION_LOCK)
            # Every checkpoint the batch needs, locked and read once per projection (in
            # the projections' order, each in stream order: see Checkpoints).
            checkpoints: dict[str, Checkpoints] = {}
            for p in self.projections:
                streams = [ev.stream_id for ev in events if ev.aggregate in p.aggregates]
                if streams:
                    checkpoints[p.name] = await Checkpoints.lock(conn, p.name, streams)
            if isolate:
                # One savepoint per event, each statement sent as it comes.
                for ev in events:
                    await self._apply_to_all(conn, ev, checkpoints, isolate, out)
            else:
                # The batch's writes pipelined (projections/pipelined.py) and its usage
                # counters summed and written once (UsageTally), into the same queue.
                try:
                    async with pipelined(conn) as via, deferred_usage(via):
                        for ev in events:
                            await self._apply_to_all(via, ev, checkpoints, isolate, out)
                except (_Poison, _Held):
                    raise
                except TRANSIENT_ERRORS:
                    raise
                except Exception as e:
                    # A queued write failed when sent: find the event in isolation.
                    raise _Poison from e
            for seen in checkpoints.values():
                await seen.save(conn)
            # One status write per projection per batch, last thing before commit.
            for name, ev in out.last.items():
                await record_status(conn, name, ev)
            # Delivered at commit, so whoever wakes on it finds the rows written.
            await announce(conn, [p for p in self.projections if out.applied.get(p.name)])
        return out

    async def _apply_to_all(
        self,
        conn: asyncpg.Connection,
        ev: RecordedEvent,
        checkpoints: dict[str, Checkpoints],
        isolate: bool,
        out: _Outcome,
    ) -> None:
        for p in self.projections:
            if ev.aggregate in p.aggregates:
                await self._apply_one(conn, p, ev, checkpoints[p.name], isolate, out)

    async def _apply_one(
        self,
        conn: asyncpg.Connection,
        p: Projection,
        ev: RecordedEvent,
        seen: Checkpoints,
        isolate: bool,
        out: _Outcome,
    ) -> None:
        """Apply one event to one projection, counting it in `out`. Isolated (a savepoint
        each), a deterministic failure skips the event; otherwise it poisons the batch."""
        try:
            if isolate:
                async with conn.transaction():  # a savepoint
                    n = await apply_checkpointed(conn, p, ev, self.event_store, seen)
            else:
                n = await apply_checkpointed(conn, p, ev, self.event_store, seen)
        except TRANSIENT_ERRORS:
            raise
        except NewerSchema as e:
            raise _Held(ev, e) from e
        except Exception as e:
            if not isolate:
                raise _Poison from e
            out.poisoned += 1
            log.error(
                "skipping event %s (%s v%d) for projection %s: %r",
                ev.id,
                ev.stream_id,
                ev.version,
                p.name,
                e,
            )
            return
        if n:
            out.applied[p.name] = out.applied.get(p.name, 0) + n
            prev = out.last.get(p.name)
            if prev is None or ev.position > prev.position:
                out.last[p.name] = ev
        else:
            out.duplicates[p.name] = out.duplicates.get(p.name, 0) + 1

    # ---- holds: events of a newer schema version -------------------------------------

    def _unheld(
        self, parsed: Sequence[tuple[ConsumerRecord, RecordedEvent]]
    ) -> list[RecordedEvent]:
        """The events to apply: none of a held partition from its hold on. (A hold starts
        where applying meets an event of a newer schema version, `_Held`: not before, so
        an event a newer projector already applied, met again after a rollback, is the
        duplicate it is and holds nothing.)"""
        out = []
        for m, ev in parsed:
            hold = self.held.get(TopicPartition(m.topic, m.partition))
            if hold is not None and m.offset >= hold.offset:
                continue
            out.append(ev)
        return out

    async def _hold(self, m: ConsumerRecord, ev: RecordedEvent, error: NewerSchema) -> None:
        """Hold (m.topic, m.partition) before `m`: logged once, counted, recorded for /ready."""
        tp = TopicPartition(m.topic, m.partition)
        current = self.held.get(tp)
        if current is not None and current.offset <= m.offset:
            return
        self.held[tp] = _Hold(m.offset, ev, error)
        PARTITIONS_HELD.set(len(self.held))
        key = (m.topic, m.partition, m.offset)
        if key not in self._logged:
            self._logged.add(key)
            log.error(
                "projection held: %s[%d]@%d is %s v%d of %s, a newer schema version than this"
                " code reads (v%d); nothing from it on is applied or committed until a"
                " projector that knows the version runs (upgrade in progress?)",
                m.topic,
                m.partition,
                m.offset,
                ev.stream_id,
                ev.version,
                ev.type,
                error.known_version,
                extra={"event_type": ev.type, "schema_version": error.stored_version},
            )
        try:
            await holds.record(self.pool, ev, error)
        except TRANSIENT_ERRORS as e:
            # Still held, logged and counted; /ready does not know until the next hold.
            log.warning("hold not recorded in Postgres: %r", e)
        async with self._progress:
            self._progress.notify_all()

    def _release(self, tps: set[TopicPartition]) -> None:
        """Forget the holds of `tps` (taken away, or the consumer stopped)."""
        for tp in tps:
            self.held.pop(tp, None)
        PARTITIONS_HELD.set(len(self.held))
