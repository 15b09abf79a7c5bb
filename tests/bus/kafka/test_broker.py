"""`long_poll` (bus/kafka/broker.py): a FastStream batch subscriber that waits for data in
`getmany` instead of sleeping after an empty poll.

Against the real embedded broker. FastStream's own `get_msg` sleeps `batch_timeout_ms`
after every empty poll (a message arriving meanwhile waits out the sleep); the sleeps are
recorded here by standing in for the `anyio` that FastStream's subscriber module uses.
The control case shows that the recorder sees FastStream's sleeps; with `long_poll` there
are none, and messages still arrive.
"""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any

import anyio
import pytest
from aiokafka import TopicPartition
from faststream.kafka.subscriber import usecase
from faststream.middlewares import AckPolicy

from bus.config.settings import Settings
from bus.kafka.broker import (
    FastStreamChatter,
    current_message,
    long_poll,
    make_broker,
    raw_records,
    subscriber_options,
)
from bus.kafka.clients import ensure_topics, make_producer
from tests.system import wait_until

pytestmark = pytest.mark.timeout(90)

BATCH_TIMEOUT_MS = 100


@pytest.mark.parametrize("patched", [True, False], ids=["long_poll", "faststream"])
async def test_long_poll_leaves_out_the_sleep_after_an_empty_poll(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, patched: bool
) -> None:
    sleeps: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await anyio.sleep(seconds)

    monkeypatch.setattr(usecase, "anyio", types.SimpleNamespace(sleep=recording_sleep))
    topic = f"{settings.topic_prefix}.long-poll-{'on' if patched else 'off'}"
    await ensure_topics(settings, [topic])
    broker = make_broker(settings, "test", telemetry=False)
    received: list[bytes] = []
    subscriber = broker.subscriber(
        topic,
        batch=True,
        group_id=f"{topic}-g",
        ack_policy=AckPolicy.ACK_FIRST,
        batch_timeout_ms=BATCH_TIMEOUT_MS,
        decoder=raw_records,
        **subscriber_options(settings, latency_critical=True),
    )
    if patched:
        long_poll(subscriber)

    @subscriber  # type: ignore[untyped-decorator]
    async def on_batch(records: Any) -> None:
        received.extend(r.value for r in records)

    await broker.start()
    producer = make_producer(settings)
    await producer.start()
    try:
        # Joined, then idle long enough for several empty polls.
        await wait_until(lambda: _assigned(subscriber), timeout=30)
        polls = 0

        async def idle_polls() -> bool:
            nonlocal polls
            polls += 1
            return polls > 20  # 20 x 50 ms, ten batch timeouts

        await wait_until(idle_polls, timeout=30)
        await producer.send_and_wait(topic, b"m")

        async def got() -> bool:
            return b"m" in received

        await wait_until(got, timeout=30)
    finally:
        await producer.stop()
        await broker.stop()
    after_empty_poll = [s for s in sleeps if s == BATCH_TIMEOUT_MS / 1000]
    if patched:
        assert after_empty_poll == []
    else:
        assert after_empty_poll, "the recorder must see FastStream's sleeps"


async def _assigned(subscriber: object) -> bool:
    consumer = getattr(subscriber, "consumer", None)
    await asyncio.sleep(0)
    return consumer is not None and bool(consumer.assignment())


@pytest.mark.parametrize("declared", [False, True], ids=["current_message", "parameter"])
async def test_current_message_takes_no_worker_thread(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    """`current_message(broker)` is the message being handled (its ack commits the batch),
    found without the worker thread that fast_depends gives a `msg: KafkaMessage`
    parameter: thread hops are recorded by standing in for fast_depends' `run_in_threadpool`.
    The control case declares the parameter and shows that the recorder sees its hop."""
    from fast_depends import utils as fd_utils
    from faststream.kafka.annotations import KafkaMessage

    hops: list[object] = []
    real = fd_utils.run_in_threadpool

    async def recording(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(fd_utils, "run_in_threadpool", recording)
    topic = f"{settings.topic_prefix}.current-message-{'param' if declared else 'ctx'}"
    group = f"{topic}-g"
    await ensure_topics(settings, [topic])
    broker = make_broker(settings, "test", telemetry=False)
    seen: list[tuple[list[bytes], Any]] = []
    subscriber = long_poll(
        broker.subscriber(
            topic,
            batch=True,
            group_id=group,
            ack_policy=AckPolicy.MANUAL,
            batch_timeout_ms=BATCH_TIMEOUT_MS,
            decoder=raw_records,
            **subscriber_options(settings, latency_critical=True),
        )
    )
    if declared:

        @subscriber  # type: ignore[untyped-decorator]
        async def with_parameter(records: Any, msg: KafkaMessage) -> None:
            seen.append(([r.value for r in records], msg))
            await msg.ack()

    else:

        @subscriber  # type: ignore[untyped-decorator]
        async def with_context(records: Any) -> None:
            msg = current_message(broker)
            seen.append(([r.value for r in records], msg))
            await msg.ack()

    await broker.start()
    producer = make_producer(settings)
    await producer.start()
    try:
        await wait_until(lambda: _assigned(subscriber), timeout=30)
        await producer.send_and_wait(topic, b"m", partition=0)

        async def got() -> bool:
            return any(b"m" in values for values, _ in seen)

        await wait_until(got, timeout=30)
        _, msg = next(s for s in seen if b"m" in s[0])
        assert msg.raw_message[0].value == b"m"  # the batch being handled, not another
        consumer = subscriber.consumer
        tp = TopicPartition(topic, 0)

        async def committed() -> bool:
            return (await consumer.committed(tp)) == 1  # the ack committed past the record

        await wait_until(committed, timeout=30)
    finally:
        await producer.stop()
        await broker.stop()
    if declared:
        assert hops, "the recorder must see the parameter's worker thread"
    else:
        assert hops == []


def test_faststreams_chatter_is_dropped_and_the_rest_kept() -> None:
    chatter = FastStreamChatter()

    def record(msg: str, level: int = logging.INFO) -> logging.LogRecord:
        return logging.LogRecord("cairn.faststream", level, __file__, 1, msg, None, None)

    assert not chatter.filter(record("callback for Task-23 is being executed..."))
    assert not chatter.filter(
        record("Auto create topics is disabled; topic cairn.x", logging.WARNING)
    )
    assert chatter.filter(record("Consumer group rebalanced", logging.WARNING))
    assert chatter.filter(record("callback for Task-23 failed"))
