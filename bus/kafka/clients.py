"""Kafka plumbing shared by every process: producers, consumers, topics, message headers.

The embedded Tansu broker does not support idempotent producers (InitProducerId fails), so
idempotence is a setting: on against real Kafka, off for the embedded broker. Without it,
ordering per partition still holds because aiokafka keeps one batch in flight per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from bus.config.settings import Settings
from domain import registry

# From the domain's registry: every aggregate has an event topic, and those that take
# commands also a command topic.
AGGREGATES: tuple[str, ...] = tuple(registry.AGGREGATES)
COMMAND_AGGREGATES: tuple[str, ...] = registry.COMMAND_AGGREGATES


# The largest request a producer sends (a message with its batch overhead): commands,
# replies and events must stay below it.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def all_topics(settings: Settings) -> list[str]:
    return (
        [settings.topic(a) for a in AGGREGATES]
        + [settings.command_topic(a) for a in COMMAND_AGGREGATES]
        + [settings.reply_topic]
    )


def assert_bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise RuntimeError(
            "CAIRN_KAFKA_BOOTSTRAP is not set (cairn up sets it for the embedded broker)"
        )
    return settings.kafka_bootstrap


def make_producer(settings: Settings, **kw: object) -> AIOKafkaProducer:
    opts: dict[str, object] = {
        "bootstrap_servers": assert_bootstrap(settings),
        "acks": "all",
        "enable_idempotence": settings.kafka_idempotence,
        "linger_ms": 0,
        "request_timeout_ms": 15000,
        "max_request_size": MAX_MESSAGE_BYTES,
    }
    opts.update(kw)
    return AIOKafkaProducer(**opts)


def group_timeouts(settings: Settings) -> dict[str, int]:
    """A group consumer's session timeout, and a heartbeat three times within it (at most
    every second): a consumer silent for the session timeout loses its partitions."""
    session = settings.kafka_session_timeout_ms
    return {
        "session_timeout_ms": session,
        "heartbeat_interval_ms": max(100, min(1000, session // 3)),
        "max_poll_interval_ms": 300000,
    }


def make_consumer(
    settings: Settings,
    *topics: str,
    group_id: str | None,
    latency_critical: bool = False,
    **kw: object,
) -> AIOKafkaConsumer:
    opts: dict[str, object] = {
        "bootstrap_servers": assert_bootstrap(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **group_timeouts(settings),
        # How long a fetch may wait for data. Real Kafka answers a fetch as soon as data
        # arrives, so this only bounds idle polling there. The embedded Tansu holds every
        # fetch until this deadline, which adds it to each command round trip (measured
        # 258 ms p50 at aiokafka's 500 ms vs ~8 ms at 10 ms): `cairn up` sets 10 ms for
        # the embedded broker, and only latency-critical consumers (commands, replies) use
        # it; the others poll at 200 ms at most, which keeps an idle system idle.
        "fetch_max_wait_ms": (
            settings.kafka_fetch_max_wait_ms
            if latency_critical
            else max(settings.kafka_fetch_max_wait_ms, 200)
        ),
    }
    opts.update(kw)
    return AIOKafkaConsumer(*topics, **opts)


def partitions_of(settings: Settings, topic: str) -> int:
    """The partitions `topic` is created with: the reply topic has its own count, since
    each command sender reads only one of its partitions (bus/actors/commandbus.py), and
    the command topics may have theirs (`kafka_command_partitions`, 0 = the default)."""
    if topic == settings.reply_topic:
        return settings.kafka_reply_partitions
    if settings.kafka_command_partitions and topic.startswith(settings.command_topic("")):
        return settings.kafka_command_partitions
    return settings.kafka_partitions


async def partition_count(settings: Settings, topic: str, timeout: float = 30.0) -> int:
    """How many partitions `topic` has, waiting up to `timeout` for it to exist (it may be
    created a moment after the asking process starts); RuntimeError if it never does."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            await consumer.topics()  # refreshes the cluster metadata
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return len(parts)
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"topic {topic} does not exist (run `cairn migrate` / create topics)"
                )
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client of the configured cluster, closed on the way out."""
    admin = AIOKafkaAdminClient(bootstrap_servers=assert_bootstrap(settings))
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def new_topics(settings: Settings, names: Iterable[str]) -> list[NewTopic]:
    """The topics to create: the configured partitions and replication, and room for the
    largest message a producer sends (a real broker's default `message.max.bytes` is
    1 MiB, and a 40,000-piece manifest is one event of about 4 MB, which it would refuse
    for ever: the relay stuck on it, every event behind it unpublished)."""
    return [
        NewTopic(
            t,
            partitions_of(settings, t),
            settings.kafka_replication_factor,
            topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
        )
        for t in names
    ]


async def ensure_topics(settings: Settings, topics: Iterable[str] | None = None) -> None:
    """Create the topics with the configured partition count; existing ones are kept."""
    async with admin_client(settings) as admin:
        existing = set(await admin.list_topics())
        wanted = [t for t in (topics or all_topics(settings)) if t not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new_topics(settings, wanted))
        # Metadata propagates asynchronously; wait until every topic is listed.
        for _ in range(100):
            if set(topics or all_topics(settings)) <= set(await admin.list_topics()):
                return
            await asyncio.sleep(0.05)


def headers(**values: str | None) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in values.items() if v is not None]


def header(msg_headers: Iterable[tuple[str, bytes]] | None, name: str) -> str | None:
    for k, v in msg_headers or ():
        if k == name:
            return v.decode()
    return None
