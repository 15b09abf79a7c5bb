"""The largest events Cairn can record reach a plain Kafka consumer: a file's whole
manifest (40,000 pieces, api/completion.py MAX_MANIFEST_ENTRIES) travels in one
FileCreated, UploadCompleted or FileReplaced, next to 8 KiB of metadata (written as the
characters JSON escapes most, six bytes each) and the longest key. README ("Limits")
promises such a message stays under the producer's request size; here the relay publishes
it to the embedded broker and an aiokafka consumer with default settings reads it back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from api.completion import MAX_MANIFEST_ENTRIES
from bus.config.settings import Settings
from bus.kafka.clients import MAX_MESSAGE_BYTES, ensure_topics
from bus.store.eventstore import PostgresEventStore
from bus.store.relay import Relay, event_message
from domain.events import EventMeta, NewEvent
from domain.files.events import FileCreated
from domain.files.keys import MAX_KEY_BYTES
from domain.values import MAX_METADATA_BYTES, MAX_METADATA_KEY, Piece

AT = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def largest_file_created() -> FileCreated:
    # Values of \x01: one UTF-8 byte each in the limit, six (\u0001) in JSON.
    metadata: dict[str, str] = {}
    left = MAX_METADATA_BYTES
    while left > 0:
        key = f"k{len(metadata):03d}".ljust(min(MAX_METADATA_KEY, 16), "k")
        value = "\x01" * max(0, min(1024, left - len(key)))
        metadata[key] = value
        left -= len(key) + len(value)
    return FileCreated(
        file_id=str(uuid4()),
        owner="o" * 255,
        name="n" * 255,
        size=MAX_MANIFEST_ENTRIES * 2**40,
        content_type="application/octet-stream",
        sha256="f" * 64,
        manifest=tuple(Piece("f" * 64, 2**40) for _ in range(MAX_MANIFEST_ENTRIES)),
        bucket="b" * 63,
        metadata=metadata,
        upload_id=str(uuid4()),
        key="\x01" * MAX_KEY_BYTES,
        at=AT,
    )


async def test_the_largest_event_reaches_a_default_consumer(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await ensure_topics(settings)
    event = largest_file_created()
    meta = EventMeta(
        occurred_at=AT,
        owner=event.owner,
        correlation_id="c" * 64,
        causation_id="c" * 64,
        traceparent=TRACEPARENT,
    )
    [stored] = await event_store.append(f"file-{event.file_id}", 0, [NewEvent.of(event)], meta)
    topic, key, value, headers = event_message(settings, stored)
    overhead = len(key) + sum(len(k) + len(v) for k, v in headers) + 100
    assert len(value) + overhead < MAX_MESSAGE_BYTES, len(value)
    assert await Relay(settings, pool).publish_pending() == 1

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = None
        async with asyncio.timeout(30):
            while got is None:
                for msgs in (await consumer.getmany(timeout_ms=200)).values():
                    got = next((m for m in msgs if m.key == key), got)
    finally:
        await consumer.stop()
    envelope = orjson.loads(got.value)
    assert envelope["id"] == stored.id
    assert len(envelope["data"]["manifest"]) == MAX_MANIFEST_ENTRIES
    assert envelope["data"]["metadata"] == event.metadata
