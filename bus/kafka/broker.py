"""The FastStream Kafka broker every process builds, and the subscriber options it uses.

One place decides how Cairn talks to Kafka through FastStream (`faststream.kafka.KafkaBroker`,
aiokafka underneath): the producer settings of `clients.make_producer` (acks=all,
idempotence per setting, no linger, 4 MiB requests), FastStream's Prometheus middleware
(`faststream_*` metrics: messages received, processed, published, their durations and
exceptions, per topic) and, where it gives the right signal, its OpenTelemetry middleware.

Topics are never created by FastStream (`allow_auto_create_topics=False`): `ensure_topics`
creates them with the configured partition count and replication factor, and a consumer
that auto-created a topic with the broker's default partition count would break the
keying of commands by aggregate.

Subscribers commit offsets themselves (`AckPolicy.MANUAL`): every handler acknowledges a
message only after its effect is durable (an append, a projection transaction, an accepted
follow-up command), and on failure rewinds (`nack`) so that nothing is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import chain
from typing import Any

from aiokafka import TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.publisher.usecase import DefaultPublisher
from opentelemetry import trace
from prometheus_client import REGISTRY

from bus.config import metrics
from bus.config.settings import Settings
from bus.ids import uuid4_str
from bus.kafka.clients import (
    COMMAND_AGGREGATES,
    MAX_MESSAGE_BYTES,
    assert_bootstrap,
    group_timeouts,
)

# How long a batch subscriber's poll waits for data. aiokafka's `getmany` returns as soon
# as a fetch brings records, so this costs no latency once `long_poll` has removed
# FastStream's sleep after an empty poll; it only sets how often an idle loop wakes up.
BATCH_TIMEOUT_MS = 1000


class FastStreamChatter(logging.Filter):
    """Drops two of FastStream's records that say nothing to an operator: its warning that
    it will not create topics, deliberate here (see the module docstring) and logged by
    every subscriber on every start, and its note that a subscriber task's done-callback
    runs, logged for every subscriber task on every stop."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "Auto create topics is disabled" in message
            or (message.startswith("callback for ") and message.endswith(" is being executed..."))
        )


# FastStream's records go through the standard library, so they reach the one JSON stream
# of bus/config/logs.py instead of FastStream's own plain-text handler.
_LOGGER = logging.getLogger("cairn.faststream")
_LOGGER.addFilter(FastStreamChatter())


def make_broker(settings: Settings, service: str, *, telemetry: bool = True) -> KafkaBroker:
    """A broker for one process (`service` labels its metrics).

    `telemetry=False` leaves out the OpenTelemetry middleware: it writes a `traceparent`
    header of its own producer span on every publish, which is wrong for the relay, whose
    events must carry the traceparent stored with them (the span of the command that
    caused them), not one of the relay's; needless for the command senders, whose
    commands carry their sender's traceparent already (bus/actors/commandbus.py); and for
    the actor host, which makes each command's span itself (bus/actors/host.py).
    """
    middlewares: list[Any] = [
        KafkaPrometheusMiddleware(registry=REGISTRY, app_name=f"cairn-{service}")
    ]
    if telemetry:
        middlewares.insert(0, KafkaTelemetryMiddleware(tracer_provider=trace.get_tracer_provider()))
    return KafkaBroker(
        assert_bootstrap(settings),
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        linger_ms=0,
        request_timeout_ms=15000,
        max_request_size=MAX_MESSAGE_BYTES,
        allow_auto_create_topics=False,
        client_id=f"cairn-{service}",
        middlewares=middlewares,
        # Each publish takes a correlation id: ours come without a system call each.
        id_generator=uuid4_str,
        # Cairn logs through structlog; FastStream's per-message access log at INFO would
        # double every line.
        logger=_LOGGER,
        log_level=logging.DEBUG,
        graceful_timeout=15.0,
    )


def fetch_max_wait_ms(settings: Settings, *, latency_critical: bool) -> int:
    """How long a fetch may wait for data (see `clients.make_consumer` for the embedded
    broker, which holds every fetch until this deadline)."""
    if latency_critical:
        return settings.kafka_fetch_max_wait_ms
    return max(settings.kafka_fetch_max_wait_ms, 200)


def subscriber_options(settings: Settings, *, latency_critical: bool = False) -> dict[str, Any]:
    """Consumer settings shared by every subscriber (same as `clients.make_consumer`)."""
    return {
        "auto_offset_reset": "earliest",
        **group_timeouts(settings),
        "fetch_max_wait_ms": fetch_max_wait_ms(settings, latency_critical=latency_critical),
    }


def long_poll(subscriber: Any) -> Any:
    """Make a FastStream batch subscriber wait for data instead of spinning; returns it.

    FastStream's `BatchSubscriber.get_msg` sleeps `batch_timeout_ms` after every empty
    `getmany`, so a message arriving meanwhile waits out the sleep: to keep commands fast
    the timeout had to be 10 ms, which woke each idle subscriber 50 times a second (about
    2 % of a core for the actor host alone). `getmany(timeout_ms=...)` already blocks until
    records arrive or the timeout passes (and through rebalances), so the sleep adds
    nothing but delay; this instance-level `get_msg` leaves it out, and the timeout can be
    long. Relies on FastStream's loop calling `self.get_msg(consumer)` and treating an
    empty tuple as "nothing yet" (faststream.kafka.subscriber.usecase; pinned in uv.lock,
    covered by tests/bus/kafka/test_broker.py).
    """
    timeout_ms = subscriber.batch_timeout_ms
    max_records = subscriber.max_records

    async def get_msg(consumer: Any) -> tuple[Any, ...]:
        messages = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return tuple(chain.from_iterable(messages.values()))

    subscriber.get_msg = get_msg
    return subscriber


def current_message(broker: KafkaBroker) -> Any:
    """The FastStream message (KafkaMessage: ack, nack, consumer) a handler of `broker` is
    handling now, read from the broker's context.

    Declared as a handler parameter (`msg: KafkaMessage`) it is a dependency whose resolver
    is synchronous, and fast_depends runs a synchronous resolver in a worker thread: one
    thread hop per batch, in every consuming process, about 4 % of the actor host's CPU
    under sequential commands and the hop's latency on every command (issue 13)."""
    return broker.context.get_local("message")


async def raw_records(msg: Any) -> Any:
    """Decoder that hands the handler the aiokafka records themselves (a tuple for a batch
    subscriber): Cairn parses its own envelopes and needs offsets and headers."""
    return msg.raw_message


def observe_batch(group: str, consumer: Any, records: Iterable[Any]) -> None:
    """Consumer lag metrics (bus/config/metrics.py) for one batch a subscriber received."""
    batch: dict[TopicPartition, list[Any]] = {}
    for rec in records:
        batch.setdefault(TopicPartition(rec.topic, rec.partition), []).append(rec)
    metrics.observe_fetch(group, consumer, batch)


def reply_publisher(broker: KafkaBroker, settings: Settings) -> DefaultPublisher:
    return broker.publisher(
        settings.reply_topic,
        title="replies",
        description="The actors' answer to each command, keyed by command id.",
    )


def command_publishers(broker: KafkaBroker, settings: Settings) -> dict[str, DefaultPublisher]:
    """One declared publisher per command topic, by aggregate."""
    return {
        a: broker.publisher(
            settings.command_topic(a),
            title=f"commands.{a}",
            description=f"Commands for {a} aggregates, keyed by aggregate id.",
        )
        for a in COMMAND_AGGREGATES
    }
