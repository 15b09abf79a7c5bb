"""The handlers process: consumes domain events and issues follow-up commands.

At-least-once: offsets are committed only after every follow-up command of a batch was
accepted by the actors; a redelivered event produces the same command id again, which the
actors recognise, so the effect happens once. A FastStream batch subscriber with manual
acknowledgement: a follow-up command that is not confirmed stops its partition at that
event (rewound and paused, retried after RETRY_AFTER seconds); the events before it are
committed. An event of a newer schema version than this code reads, or whose follow-up the
actor host refuses with `upgrade_in_progress`, holds its partition the same way, but is
tried again only on a timer backing off from 1 s to 30 s (handlers/held.py: logged once
per event type and version, counted in `cairn_handler_events_held{worker="handlers"}`).
Only that partition waits (paused in the consumer, resumed when its wait is over): the
others go on at once. Before, the whole consumer slept 1 s after every batch that met such
an event, and while one was held every batch met it again. A rebalance keeps the wait of a
partition that stays with this consumer and drops the wait of one that goes (see
`_park`, `_unpark`): aiokafka forgets a pause with the assignment. An event's wait is kept
with the event too (`_due_in`): met again before it is over, as in a partition given back
in a later rebalance, it is not tried early; its partition waits out the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import Any

import asyncpg
import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from opentelemetry.trace import SpanKind

from bus import maintenance as cleanup
from bus.actors.commandbus import BusUnavailable, CommandBus
from bus.actors.wake import GatedListener, IdleGate, Nudger, gated_while_idle
from bus.aio import Stopped, unless_stopped
from bus.blobs.errors import BlobStoreUnavailable
from bus.blobs.factory import open_blob_store
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.config.tracing import current_traceparent, span
from bus.kafka.broker import (
    BATCH_TIMEOUT_MS,
    current_message,
    long_poll,
    make_broker,
    observe_batch,
    raw_records,
    subscriber_options,
)
from bus.kafka.clients import header
from bus.store.eventstore import PostgresEventStore
from domain.errors import DomainError, NewerSchema
from domain.events import RecordedEvent
from handlers import files_from_fetches, files_from_uploads
from handlers.held import Holds, upgrade_in_progress

log = get_logger(__name__)

# Seconds a partition waits after an event whose follow-up could not be confirmed (the bus
# or the blob store unavailable) before that event is tried again.
RETRY_AFTER = 1.0


class Handlers:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.store = PostgresEventStore(pool)
        # Completing an upload needs the sha256 of its bytes (see files_from_uploads).
        self.blobs = open_blob_store(settings.blobs_url, settings)
        self.group_id = f"{settings.topic_prefix}-handlers"
        self.batches = 0  # bumped at the start and end of every batch (the idle gate)
        # Events held for a newer version of Cairn (each retried until it can be handled).
        self.holds = Holds("handlers")
        # Partitions paused at such an event or a failed one, each with the timer that
        # resumes it (the idle gate leaves them paused meanwhile).
        self.waiting: dict[TopicPartition, asyncio.TimerHandle] = {}
        # The waits of partitions being revoked, by when each ends (loop time), until the
        # assignment that follows (see _park).
        self._parked: dict[TopicPartition, float] = {}
        # When each event whose follow-up failed may be tried again (loop time), by event
        # id, as `holds` keeps a held event's back-off: the wait belongs to the event, so
        # that it is kept wherever the event is met again (see `_due_in`).
        self._retry_at: dict[str, float] = {}
        self.gate: IdleGate | None = None

    async def run(self, stop: asyncio.Event) -> None:
        # The nudge wakes an idle actor host (bus/actors/wake.py).
        bus = CommandBus(self.settings, service="handlers", nudge=Nudger(self.pool), pool=self.pool)
        await bus.start()
        broker = make_broker(self.settings, "handlers")
        subscriber = self.declare(broker, bus, stop)
        # Expiry and garbage collection on a timer, next to the consumer; the advisory lock
        # inside keeps it to one run at a time however many handlers processes there are.
        cleaner = asyncio.create_task(
            cleanup.run_periodically(self.settings, self.pool, bus, stop, self.blobs)
        )
        try:
            with contextlib.suppress(Stopped):
                await unless_stopped(broker.start(), stop)
                # Idle: stop fetching until an event is appended or published. A partition
                # waiting at an event stays paused when the gate wakes the others.
                async with gated_while_idle(
                    subscriber.consumer,
                    self.listener,
                    self.pool,
                    self.settings,
                    stop,
                    lambda: self.batches,
                    keep_paused=self.waiting.keys,
                ) as gate:
                    self.gate = gate
                    await stop.wait()
        finally:
            self.gate = None
            for timer in self.waiting.values():
                timer.cancel()
            self.waiting.clear()
            self._parked.clear()
            self._retry_at.clear()
            cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await cleaner
            with contextlib.suppress(Exception):
                await broker.stop()
            await bus.stop()
            await self.blobs.close()

    def declare(self, broker: KafkaBroker, bus: CommandBus, stop: asyncio.Event) -> Any:
        """Declare the upload-event subscriber on `broker`; return it."""
        handlers = self

        class Waits(GatedListener):
            # Called by aiokafka between batches or during one (an await in `handle`);
            # never on the hot path. (The rebalance dropped the idle gate's pauses too:
            # made again by the GatedListener; a wake-up resumes those partitions, not the
            # ones waiting at an event.)
            async def revoked(self, revoked: set[TopicPartition]) -> None:
                handlers._park(revoked)

            async def assigned(self, assigned: set[TopicPartition]) -> None:
                handlers._unpark(subscriber.consumer, assigned)

        self.listener = Waits()
        subscriber = long_poll(
            broker.subscriber(
                self.settings.topic("uploads"),
                self.settings.topic("fetches"),
                batch=True,
                group_id=self.group_id,
                ack_policy=AckPolicy.MANUAL,
                batch_timeout_ms=BATCH_TIMEOUT_MS,
                listener=self.listener,
                decoder=raw_records,
                title="handlers",
                description="Upload and fetch events that call for a follow-up command.",
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
            observe_batch(self.group_id, msg.consumer, records)
            events = [(rec, _decode(rec)) for rec in records]
            ahead = await files_from_uploads.look_ahead(
                (ev for _, ev in events if ev is not None), self.store
            )
            failed: set[tuple[str, int]] = set()
            self.holds.prune()
            self._prune_retries()
            for rec, ev in events:
                tp = (rec.topic, rec.partition)
                if tp in failed:
                    continue  # strictly in order: nothing after a failed record yet
                if ev is None:
                    continue
                wait = self._due_in(ev.id)
                if not wait:
                    self._retry_at.pop(ev.id, None)
                    if await self._handle(bus, ev, ahead):
                        continue
                    # Held: its back-off; else failed: RETRY_AFTER, kept with the event.
                    wait = self.holds.remaining(ev.id) or self._retry_later(ev.id)
                failed.add(tp)
                # The event waits (held, failed, or met again before its wait is
                # over): rewind this partition to it, the commit below stops there,
                # and it is fetched again once the partition's wait is over. Other
                # partitions are not held up meanwhile.
                part = TopicPartition(*tp)
                consumer: Any = msg.consumer  # (aiokafka's; the protocol lacks this)
                if part not in consumer.assignment():
                    # Taken away by a rebalance while this batch ran (seek and pause
                    # would raise, failing the rest of the batch): its new owner starts
                    # at the group's offset, which is before this event.
                    continue
                consumer.seek(part, rec.offset)
                self._wait(consumer, part, wait)
            try:
                await msg.ack()  # every partition up to its position
            except KafkaError as e:
                log.warning("offset commit failed, events will be redelivered", error=str(e))

        return subscriber

    def _due_in(self, event_id: str) -> float:
        """Seconds until the event `event_id` may be tried (0: now): a held event's back-off
        (`holds`), or what is left of a failed event's RETRY_AFTER.

        Kept by the event, not by its partition's assignment: a partition taken by another
        consumer and given back in a later rebalance (`_unpark` dropped its wait: in
        between the other may have gone past the event) is fetched again at once; if it is
        still at that event, its wait is met here and the partition waits out the rest,
        instead of the event being retried early. Only this process's waits: another
        process that gets the partition starts at the event (its first try there is its
        own; a held event is counted and logged by each process that holds it)."""
        left = self.holds.remaining(event_id)
        retry_at = self._retry_at.get(event_id)
        if retry_at is not None:
            left = max(left, retry_at - asyncio.get_running_loop().time())
        return left if left > 0 else 0.0

    def _retry_later(self, event_id: str) -> float:
        """The follow-up of `event_id` failed: it waits RETRY_AFTER (seconds, returned)."""
        self._retry_at[event_id] = asyncio.get_running_loop().time() + RETRY_AFTER
        return RETRY_AFTER

    def _prune_retries(self) -> None:
        """Forget the failed events whose wait is over (met again or not: handled by another
        process, say), so that what is kept stays as small as what waits."""
        if self._retry_at:
            now = asyncio.get_running_loop().time()
            self._retry_at = {k: at for k, at in self._retry_at.items() if at > now}

    def _wait(self, consumer: Any, tp: TopicPartition, seconds: float) -> None:
        """Pause `tp` (rewound to the event it waits at) for `seconds`, then resume it."""
        consumer.pause(tp)
        timer = self.waiting.pop(tp, None)
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        self.waiting[tp] = loop.call_later(seconds, self._resume, consumer, tp)

    def _resume(self, consumer: Any, tp: TopicPartition) -> None:
        self.waiting.pop(tp, None)
        # (A revocation cancels the timer, see _park; this is a guard: resuming a partition
        # that is not ours would raise.)
        if tp in consumer.assignment():
            consumer.resume(tp)
        if self.gate is not None:
            # An idle gate has every partition paused; an awake one might pause them all
            # before this one's event is fetched: either way, wake it for the event.
            self.gate.wake()

    def _park(self, revoked: Collection[TopicPartition]) -> None:
        """A rebalance revokes `revoked` (aiokafka revokes every partition, then assigns
        again, and forgets their pauses): cancel their waits' timers, keeping when each
        wait ends until the assignment that follows (`_unpark`).

        A timer must not outlive its partition: if the partition comes back later, its new
        owner may have gone past the event meanwhile, and a stale wait would keep it paused
        (the idle gate leaves `waiting` paused when it wakes) or resume it while it waits
        at another event. Order needs nothing more: the group's offset of such a partition
        is the waiting event's (the commit stopped there), so whoever fetches it next
        starts with that event and handles nothing behind it first."""
        for tp in revoked:
            timer = self.waiting.pop(tp, None)
            if timer is not None:
                timer.cancel()
                self._parked[tp] = timer.when()

    def _unpark(self, consumer: Any, assigned: Collection[TopicPartition]) -> None:
        """The assignment after a revocation: a partition that waited and is ours again
        waits on, paused until its wait ends (before its first fetch: aiokafka calls this
        before it has read the group's offsets). Nobody else held it in between (the group
        assigns nothing until every member has revoked), so it is still at the event it
        waited at: fetched now, a failed event would be retried early and a held one
        fetched only to be paused again (its back-off, and its one log line, are kept by
        `holds` either way). The waits of partitions that went to another consumer are
        dropped: its new owner decides. If one comes back in a later rebalance, it is
        fetched at once, and if it is still at the event that waited, the event's own
        wait (`_due_in`) pauses it for the rest: its timer could not be kept for it, as
        the other consumer may have gone past the event meanwhile, which only what is
        fetched tells."""
        parked, self._parked = self._parked, {}
        loop = asyncio.get_running_loop()
        for tp, until in parked.items():
            if tp in assigned and until > loop.time():
                consumer.pause(tp)
                self.waiting[tp] = loop.call_at(until, self._resume, consumer, tp)

    async def _handle(
        self, bus: CommandBus, ev: RecordedEvent, ahead: files_from_uploads.Ahead
    ) -> bool:
        try:
            if ev.aggregate == "fetches":
                cmd = await files_from_fetches.command_for(ev, self.store, self.blobs)
            else:
                cmd = await files_from_uploads.command_for(ev, self.store, self.blobs, ahead)
        except BlobStoreUnavailable as e:
            log.warning("blob store unavailable; will retry", error=str(e))
            return False
        except NewerSchema as e:
            # Written by a newer version (an upgrade in progress, or a rollback): neither
            # misread nor dropped; retried (the partition waits here, backing off) until a
            # process that reads it runs. Said once per event type and version.
            self.holds.hold_event(
                ev,
                e,
                "follow-up waits: an event of a newer schema version than this process"
                " reads (upgrade in progress?); will retry",
            )
            return False
        if cmd is None:
            self.holds.release(ev.id)
            return True
        try:
            with span(f"handle {ev.type}", ev.traceparent, SpanKind.CONSUMER, event_id=ev.id):
                await bus.send(
                    cmd, correlation_id=ev.correlation_id, traceparent=current_traceparent()
                )
        except DomainError as e:
            if upgrade_in_progress(e):
                # The actor host could not read the target stream yet (it holds an event
                # of a newer schema version). Retryable, not a refusal: the follow-up must
                # not be dropped. Held like an event of a newer version (above).
                self.holds.hold_event(
                    ev,
                    e,
                    "follow-up command deferred: its stream holds an event of a newer schema"
                    " version than the actor host reads (upgrade in progress?); will retry",
                    command=cmd.type,
                )
                return False
            self.holds.release(ev.id)
            if e.kind == "unavailable":
                log.warning("follow-up command deferred; will retry", code=e.code)
                return False
            log.warning("follow-up command refused", event_type=ev.type, code=e.code)
            return True
        except BusUnavailable as e:
            log.warning("follow-up command not confirmed; will retry", error=str(e))
            return False
        self.holds.release(ev.id)
        return True


def _decode(rec: Any) -> RecordedEvent | None:
    try:
        return RecordedEvent.from_envelope(
            orjson.loads(rec.value), header(rec.headers, "traceparent")
        )
    except Exception as e:
        log.warning("malformed event skipped", error=str(e))
        return None
