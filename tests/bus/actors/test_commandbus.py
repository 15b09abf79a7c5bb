"""Command round trips through the real broker and actor host: each reply comes back on
the reply partition its command names, which each sender moves on from in turn
(bus/actors/commandbus.py)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import UnknownError

from bus.actors import commandbus
from bus.actors.commandbus import REPLY_PARTITION, CommandBus
from bus.actors.host import ActorHost, reply_partition
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, make_consumer, partition_count
from tests.bus.actors.test_host import initiate

COMMANDS = 6


def record(headers: list[tuple[str, bytes]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, 0, 0, 0, b"k", b"v", None, 1, 1, headers)


def test_the_reply_partition_is_read_from_the_command_headers() -> None:
    assert reply_partition(record([(REPLY_PARTITION, b"7")])) == 7
    # None lets the key decide, as for a command from a sender that names no partition.
    assert reply_partition(record([])) is None
    assert reply_partition(record([(REPLY_PARTITION, b"-1")])) is None
    assert reply_partition(record([(REPLY_PARTITION, b"x")])) is None


async def _read_all(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topic` so far, from every partition."""
    count = await partition_count(settings, topic)
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[ConsumerRecord[bytes, bytes]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for recs in (await consumer.getmany(timeout_ms=1000)).values():
                found.extend(recs)
        return found
    finally:
        await consumer.stop()


async def test_replies_come_on_the_partition_each_command_names_which_moves_on(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await ensure_topics(settings)
    assert await partition_count(settings, settings.reply_topic) == (
        settings.kafka_reply_partitions
    )
    host = ActorHost(settings, pool)
    stop = asyncio.Event()
    running = asyncio.create_task(host.run(stop))
    # Two senders, one moving on every 2 commands.
    buses = [CommandBus(settings, replies_per_partition=2), CommandBus(settings)]
    sent: list[str] = []
    try:
        for bus in buses:
            await bus.start()
        for i in range(3 * COMMANDS):
            result = await buses[i % 2].send(initiate(str(uuid.uuid4())))
            assert result.applied  # its reply came back
            sent.append(result.command_id)
    finally:
        for bus in buses:
            await bus.stop()
        stop.set()
        await asyncio.wait_for(running, 30)
    named = {
        dict(r.headers)["command-id"].decode(): int(dict(r.headers)[REPLY_PARTITION].decode())
        for r in await _read_all(settings, settings.command_topic("uploads"))
    }
    replied = {r.key.decode(): r.partition for r in await _read_all(settings, settings.reply_topic)}
    # Each reply is on the partition its command named (keyed by command id instead, 18
    # replies would land there by chance with odds of about one in 16 ** 18)...
    assert {cid: replied.get(cid) for cid in sent} == {cid: named[cid] for cid in sent}
    # ...which the first sender moved on from every 2 commands, to the next; the second
    # stayed on one.
    first = [named[cid] for cid in sent[0::2]]
    count = settings.kafka_reply_partitions
    assert first == [(first[0] + k // 2) % count for k in range(len(first))]
    assert len({named[cid] for cid in sent[1::2]}) == 1


class _FlakyPublisher:
    """Fails its first `failures` publishes as the embedded broker does in the moment a
    topic is recycled."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def publish(self, body: bytes, **kw: object) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise UnknownError()
        return "sent"


async def test_a_publish_met_by_an_unknown_error_is_repeated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commandbus, "PUBLISH_RETRIES", (0.0, 0.0, 0.0))
    flaky = _FlakyPublisher(failures=2)
    send = commandbus._Send(flaky, "t", b"{}", b"k", {"command-id": "c"}, {})
    assert await send() == "sent" and flaky.calls == 3
    # It gives up after the last repeat: the sender answers 503, the client retries.
    broken = _FlakyPublisher(failures=10)
    send = commandbus._Send(broken, "t", b"{}", b"k", {"command-id": "c"}, {})
    with pytest.raises(UnknownError):
        await send()
    assert broken.calls == 4
