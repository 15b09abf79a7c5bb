"""Clients the README's Kafka section names, against the embedded (Tansu) broker, with the
settings it gives: confluent-kafka (librdkafka) in a consumer group and by assignment,
aiokafka without a group. And Debian 12's kcat, which the README says does not work."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, TopicPartition

from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, headers, make_producer
from bus.run.embedded import EmbeddedKafka

N = 5


async def publish(kafka: EmbeddedKafka) -> tuple[str, list[dict[str, object]]]:
    """N event-shaped messages on a fresh topic, as the relay sends them (Cairn's producer
    settings, key = aggregate id, event-id / event-type headers)."""
    s = Settings(kafka_bootstrap=kafka.bootstrap, kafka_idempotence=False, kafka_partitions=3)
    topic = f"ext-{uuid.uuid4().hex[:8]}.uploads"
    await ensure_topics(s, [topic])
    producer = make_producer(s)
    await producer.start()
    sent = []
    try:
        for i in range(N):
            value = {"id": str(uuid.uuid4()), "type": "UploadInitiated", "version": 1, "n": i}
            sent.append(value)
            await producer.send_and_wait(
                topic,
                key=f"upload-{i}".encode(),
                value=orjson.dumps(value),
                headers=headers(**{"event-id": str(value["id"]), "event-type": "UploadInitiated"}),
            )
    finally:
        await producer.stop()
    return topic, sent


def drain(consumer: Consumer, deadline: float) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    while len(got) < N and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        assert dict(msg.headers() or [])["event-type"] == b"UploadInitiated"
        got.append(orjson.loads(msg.value()))
    return got


def by_id(events: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {e["id"]: e for e in events}


async def in_thread(fn: Callable[[], list[dict[str, object]]]) -> list[dict[str, object]]:
    return await asyncio.to_thread(fn)


async def test_confluent_kafka_consumer_group_with_a_short_session(
    kafka_server: EmbeddedKafka,
) -> None:
    topic, sent = await publish(kafka_server)

    def consume() -> list[dict[str, object]]:
        # The README's settings: without session.timeout.ms=6000 the embedded broker holds
        # the group join for about the default 45 s session timeout's first rebalance.
        c = Consumer(
            {
                "bootstrap.servers": kafka_server.bootstrap,
                "group.id": f"readme-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
            }
        )
        try:
            c.subscribe([topic])
            return drain(c, time.monotonic() + 60)
        finally:
            c.close()

    assert by_id(await in_thread(consume)) == by_id(sent)


async def test_confluent_kafka_by_assignment_without_a_group(kafka_server: EmbeddedKafka) -> None:
    topic, sent = await publish(kafka_server)

    def consume() -> list[dict[str, object]]:
        c = Consumer(
            {
                "bootstrap.servers": kafka_server.bootstrap,
                "group.id": "unused",  # required by librdkafka; no offsets are committed
                "enable.auto.commit": False,
            }
        )
        try:
            parts = c.list_topics(topic, timeout=10).topics[topic].partitions
            c.assign([TopicPartition(topic, p, 0) for p in parts])
            return drain(c, time.monotonic() + 30)
        finally:
            c.close()

    assert by_id(await in_thread(consume)) == by_id(sent)


async def test_aiokafka_without_a_group(kafka_server: EmbeddedKafka) -> None:
    topic, sent = await publish(kafka_server)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_server.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < N and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    assert by_id(got) == by_id(sent)


KCAT = shutil.which("kcat")


@pytest.mark.skipif(KCAT is None, reason="kcat is not installed (apt-get install kcat)")
def test_debian_kcat_fails_as_the_readme_says(kafka_server: EmbeddedKafka) -> None:
    """Pins the README's claim: kcat built on librdkafka 2.0.x (Debian 12) cannot talk to
    the embedded broker. If a newer kcat works, the README should say so instead."""
    assert KCAT is not None
    version = subprocess.run([KCAT, "-V"], capture_output=True, text=True, check=False).stdout
    librdkafka = re.search(r"librdkafka (\d+)\.(\d+)", version)
    if not librdkafka or (int(librdkafka.group(1)), int(librdkafka.group(2))) != (2, 0):
        pytest.skip(f"not Debian 12's kcat: {version.strip()[:120]}")
    r = subprocess.run(
        [KCAT, "-b", kafka_server.bootstrap, "-L", "-m", "3"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode != 0
    assert "ApiVersionRequest failed" in r.stderr, r.stderr
