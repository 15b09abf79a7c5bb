"""The actor host: applies commands to aggregates, one writer per aggregate at a time.

It is a Kafka consumer group on the command topics. Kafka assigns each partition (and so
each aggregate, keyed by id) to one host; within a partition commands are applied strictly
one after another. For each command the actor decides from cached state, appends with the
expected version and replies. The cache may be stale (another host had the partition a
moment ago): then the append fails the version check and the actor reloads and decides
again, so correctness never depends on the assignment, only speed does.

Offsets are committed after the append (and the reply) — at-least-once. A command that is
redelivered after a crash is recognised by its id in `eventstore.applied_commands` (written
in the append's transaction) and answered from the events it appended then: applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import OrderedDict
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from opentelemetry.trace import SpanKind

from bus.actors.commandbus import PROBE_TYPE
from bus.actors.wake import IdleGate
from bus.config import metrics
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.config.tracing import current_traceparent, span
from bus.kafka.clients import (
    COMMAND_AGGREGATES,
    header,
    make_consumer,
    make_producer,
    poll_until_stopped,
)
from bus.store.eventstore import PostgresEventStore
from domain.commands import Command, command_from_dict
from domain.errors import DomainError, InvalidInput
from domain.events import EventMeta, RecordedEvent
from domain.ports import ConcurrencyError, DuplicateCommand, EventStore
from domain.registry import AGGREGATES

log = get_logger(__name__)

MAX_CONFLICT_RETRIES = 8
CACHE_SIZE = 10_000


def summarize(state: Any) -> dict[str, Any] | None:
    """A JSON-friendly view of an aggregate's state for replies (no per-chunk detail)."""
    if state is None:
        return None
    out: dict[str, Any] = {}
    for f in dataclasses.fields(state):
        if f.name in ("chunks", "manifest", "pieces"):
            continue
        v = getattr(state, f.name)
        if isinstance(v, datetime):
            v = v.isoformat()
        elif hasattr(v, "value"):
            v = v.value
        out[f.name] = v
    if hasattr(state, "chunks"):
        out["chunks_received"] = len(state.chunks)
        out["bytes_received"] = state.bytes_received
        out["missing_count"] = state.total_chunks - len(state.chunks)
    return out


class Actors:
    """Decide-and-append with a state cache; transport-free so it can be tested directly."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._cache: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    async def _load(self, stream_id: str, aggregate: str) -> tuple[Any, int]:
        cached = self._cache.get(stream_id)
        if cached is not None:
            self._cache.move_to_end(stream_id)
            return cached
        events = await self.store.read_stream(stream_id)
        state = AGGREGATES[aggregate].fold(events)
        version = events[-1].version if events else 0
        self._remember(stream_id, state, version)
        return state, version

    def _remember(self, stream_id: str, state: Any, version: int) -> None:
        self._cache[stream_id] = (state, version)
        self._cache.move_to_end(stream_id)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def forget(self, stream_id: str) -> None:
        self._cache.pop(stream_id, None)

    async def execute(
        self, cmd: Command, *, correlation_id: str | None = None, traceparent: str | None = None
    ) -> dict[str, Any]:
        """Apply one command; return the reply body (never raises for domain refusals)."""
        agg = AGGREGATES.get(cmd.aggregate)
        if agg is None:
            return _refusal(InvalidInput("unknown_aggregate", f"no aggregate {cmd.aggregate!r}"))
        stream_id = cmd.stream_id
        for attempt in range(MAX_CONFLICT_RETRIES):
            state, version = await self._load(stream_id, cmd.aggregate)
            try:
                new = agg.decide(state, cmd)
            except DomainError as e:
                return _refusal(e)
            if not new:
                return {"ok": True, "events": [], "state": summarize(state), "version": version}
            meta = EventMeta(
                occurred_at=cmd.at,
                owner=getattr(state, "owner", None) or getattr(cmd, "owner", None) or cmd.caller,
                correlation_id=correlation_id or cmd.command_id,
                causation_id=cmd.command_id or None,
                traceparent=traceparent,
            )
            try:
                recorded = await self.store.append(
                    stream_id, version, new, meta, command_id=cmd.command_id or None
                )
            except ConcurrencyError:
                # Someone else wrote this stream (a previous owner of the partition, or a
                # replay): our cached state is stale. Reload and decide again.
                self.forget(stream_id)
                log.info("version conflict, retrying", stream_id=stream_id, attempt=attempt)
                continue
            except DuplicateCommand as dup:
                self.forget(stream_id)
                state, version = await self._load(stream_id, cmd.aggregate)
                return {
                    "ok": True,
                    "duplicate": True,
                    "events": [e.envelope() for e in dup.events],
                    "state": summarize(state),
                    "version": version,
                }
            state = agg.fold(recorded, state)
            version = recorded[-1].version
            self._remember(stream_id, state, version)
            return {
                "ok": True,
                "events": [e.envelope() for e in recorded],
                "state": summarize(state),
                "version": version,
            }
        self.forget(stream_id)
        return _refusal(
            DomainError(
                "contention", "too many concurrent writers; retry", {"stream_id": stream_id}
            )
        )


def _refusal(e: DomainError) -> dict[str, Any]:
    return {"ok": False, "error": e.to_dict()}


class ActorHost:
    """The Kafka side: consume commands, run them through `Actors`, reply, commit."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        *,
        group_id: str | None = None,
        store: EventStore | None = None,
    ) -> None:
        self.settings = settings
        self.actors = Actors(store or PostgresEventStore(pool))
        self.group_id = group_id or f"{settings.topic_prefix}-actors"
        self.processed = 0
        self.assigned: set[TopicPartition] = set()
        self.pool = pool

    async def run(self, stop: asyncio.Event) -> None:
        topics = [self.settings.command_topic(a) for a in COMMAND_AGGREGATES]
        consumer = make_consumer(
            self.settings, group_id=self.group_id, latency_critical=True, max_poll_records=500
        )
        producer = make_producer(self.settings)
        host = self

        from aiokafka.abc import ConsumerRebalanceListener

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
                host.assigned -= set(revoked)

            async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
                host.assigned |= set(assigned)

        consumer.subscribe(topics, listener=Listener())
        await producer.start()
        await consumer.start()
        # Idle: stop fetching until a sender's nudge (see bus/actors/wake.py).
        gate = IdleGate(consumer)
        await gate.listen(self.pool)
        log.info("actor host started", group=self.group_id)
        try:
            while not stop.is_set():
                await gate.wait_for_work(stop)
                if stop.is_set():
                    break
                batch = await poll_until_stopped(consumer, stop, gate.poll_ms)
                if batch is None:
                    break
                gate.after_poll(bool(batch))
                if not batch:
                    continue
                # Partitions are independent: run them concurrently, each strictly in order.
                await asyncio.gather(
                    *[self._run_partition(producer, recs) for recs in batch.values()]
                )
                offsets = {
                    tp: OffsetAndMetadata(recs[-1].offset + 1, "") for tp, recs in batch.items()
                }
                await consumer.commit(offsets)
        finally:
            await gate.close(self.pool)
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await producer.stop()
            log.info("actor host stopped", processed=self.processed)

    async def _run_partition(
        self, producer: AIOKafkaProducer, records: list[ConsumerRecord[Any, Any]]
    ) -> None:
        sends = []
        for rec in records:
            reply_key, reply = await self._handle(rec)
            self.processed += 1
            if reply_key:
                sends.append(
                    await producer.send(
                        self.settings.reply_topic, key=reply_key, value=orjson.dumps(reply)
                    )
                )
        # Replies are best effort (the outcome is durable in Postgres already); wait so that
        # memory stays bounded and errors are logged.
        for fut in sends:
            try:
                await fut
            except Exception as e:
                log.warning("reply not delivered", error=str(e))

    async def _handle(self, rec: ConsumerRecord[Any, Any]) -> tuple[bytes | None, dict[str, Any]]:
        if header(rec.headers, "command-type") == PROBE_TYPE:
            # Readiness probe (see CommandBus.probe): answered without touching anything.
            probe_id = header(rec.headers, "command-id") or ""
            return probe_id.encode(), {"ok": True, "probe": True, "command_id": probe_id}
        try:
            body = orjson.loads(rec.value)
            cmd = command_from_dict(body)
        except Exception as e:
            log.warning("malformed command skipped", error=str(e), offset=rec.offset)
            cid = header(rec.headers, "command-id")
            return (cid.encode() if cid else None), _refusal(
                InvalidInput("malformed_command", str(e))
            )
        with structlog.contextvars.bound_contextvars(
            correlation_id=body.get("correlation_id"), command_id=cmd.command_id
        ):
            try:
                with span(
                    f"command {cmd.type}",
                    body.get("traceparent"),
                    SpanKind.CONSUMER,
                    command_id=cmd.command_id,
                    stream_id=cmd.stream_id,
                ):
                    reply = await self.actors.execute(
                        cmd,
                        correlation_id=body.get("correlation_id"),
                        traceparent=current_traceparent(),
                    )
            except Exception:
                # A bug or an infrastructure failure (Postgres down): do not skip the command.
                # Re-raise so the batch is not committed and the command is redelivered.
                log.exception("command failed", type=cmd.type)
                metrics.COMMANDS_HANDLED.labels(cmd.type, "failed").inc()
                raise
        metrics.command_handled(cmd.type, reply)
        reply["command_id"] = cmd.command_id
        return cmd.command_id.encode(), reply


def recorded_to_reply(events: list[RecordedEvent]) -> list[dict[str, Any]]:
    return [e.envelope() for e in events]
