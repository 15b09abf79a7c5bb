"""Replies by NOTIFY (bus/actors/fastreply.py), against the real PostgreSQL and broker: a
sender with a pool gets its reply on its own channel even when the reply topic brings
nothing; the host sends what queues up during a NOTIFY in one statement; a header naming
some other channel, or a reply too long for NOTIFY, goes by Kafka only; a sender whose
LISTEN connection dies stops naming its channel and listens again later."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from bus.actors import commandbus, fastreply
from bus.actors.commandbus import BusUnavailable, CommandBus
from bus.actors.fastreply import CHANNEL_HEADER, ReplyChannel, ReplyNotifier, valid_channel
from bus.actors.host import ActorHost
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics
from tests.bus.actors.test_host import initiate
from tests.system import wait_until

pytestmark = pytest.mark.timeout(120)


def _replies(via: str) -> float:
    return REGISTRY.get_sample_value("cairn_command_replies_total", {"via": via}) or 0.0


async def _no_kafka_replies(records: tuple[Any, ...]) -> None:
    """Stands in for CommandBus._on_replies: the reply topic brings nothing."""


@pytest.mark.parametrize("with_pool", [True, False], ids=["notify", "kafka-only"])
async def test_a_reply_comes_by_notify_when_the_reply_topic_brings_nothing(
    settings: Settings, pool: asyncpg.Pool, with_pool: bool
) -> None:
    await ensure_topics(settings)
    host = ActorHost(settings, pool)
    stop = asyncio.Event()
    running = asyncio.create_task(host.run(stop))
    bus = CommandBus(settings, pool=pool if with_pool else None)
    bus._on_replies = _no_kafka_replies  # type: ignore[method-assign]
    try:
        await bus.start()
        cmd = initiate(str(uuid.uuid4()))
        if with_pool:
            result = await bus.send(cmd, timeout=20)
            assert result.applied and result.version == 1

            async def notified() -> bool:  # counted once the NOTIFY statement returns
                return host.notifier.statements >= 1

            await wait_until(notified, timeout=10)
        else:
            # The control: without the channel, only the (silenced) reply topic answers.
            with pytest.raises(BusUnavailable):
                await bus.send(cmd, timeout=3)
    finally:
        await bus.stop()
        stop.set()
        await asyncio.wait_for(running, 30)


async def test_the_notifier_batches_what_queues_up_and_skips_what_it_cannot_send(
    pool: asyncpg.Pool,
) -> None:
    got: list[tuple[str, bytes]] = []
    channel = ReplyChannel(pool, lambda cid, body: got.append((cid, body)))
    assert await channel.listen()
    notifier = ReplyNotifier(pool)
    try:
        # Queued in one go: the first starts a flush, the rest wait for the next one.
        for i in range(5):
            assert notifier.send(channel.name, f"c{i}", b'{"ok":true,"n":%d}' % i)
        # Not a channel of ours (a command cannot make the host NOTIFY anything else)...
        assert not notifier.send("cairn_events", "x", b"{}")
        assert not notifier.send(None, "x", b"{}")
        # ...and too long for NOTIFY: Kafka carries it.
        assert not notifier.send(channel.name, "big", b"x" * fastreply.MAX_PAYLOAD)

        async def all_five() -> bool:
            return len(got) == 5

        await wait_until(all_five, timeout=10)
        await notifier.close()
        assert got == [(f"c{i}", b'{"ok":true,"n":%d}' % i) for i in range(5)]
        assert notifier.statements <= 2  # one for the first, one for the four behind it
    finally:
        await channel.close()


def test_only_channels_of_this_module_are_valid() -> None:
    name = f"cairn_reply_{uuid.uuid4().hex}"
    assert valid_channel(name)
    for bad in (None, "", "cairn_reply_", name[:-1], name + "0", name.upper(), "cairn_events"):
        assert not valid_channel(bad)


async def test_a_lost_listen_connection_stops_the_header_until_it_listens_again(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ensure_topics(settings)
    monkeypatch.setattr(fastreply, "RELISTEN_EVERY", 0.0)
    bus = CommandBus(settings, pool=pool)
    await bus.start()
    try:
        channel = bus._channel
        assert channel is not None and channel.listening
        tp = await bus._reply_partition()
        assert bus._reply_headers(tp)[CHANNEL_HEADER] == channel.name
        # Its backend ends (as in a PostgreSQL restart): the termination listener fires.
        conn = channel._conn
        await pool.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())

        async def lost() -> bool:
            return not channel._listening

        await wait_until(lost, timeout=10)
        # The next command names no channel (its reply comes by Kafka) and starts a new
        # LISTEN; the one after names the channel again.
        assert CHANNEL_HEADER not in bus._reply_headers(tp)

        async def back() -> bool:
            return channel._listening

        await wait_until(back, timeout=10)
        assert bus._reply_headers(tp)[CHANNEL_HEADER] == channel.name
        got: list[str] = []
        channel._on_reply = lambda cid, body: got.append(cid)
        await pool.execute("SELECT pg_notify($1, $2)", channel.name, "again\n{}")

        async def heard() -> bool:
            return got == ["again"]

        await wait_until(heard, timeout=10)
    finally:
        await bus.stop()


@pytest.mark.parametrize("notified", [True, False], ids=["by-notify", "no-notify"])
async def test_the_reply_topic_is_read_only_when_no_notify_came_in_time(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, notified: bool
) -> None:
    """A sender whose channel listens leaves its reply partition paused while the reply
    comes by NOTIFY; when none comes (here: a host that sends none), it reads the reply
    topic after KAFKA_FALLBACK_AFTER, from before the reply, and still gets it."""
    await ensure_topics(settings)
    # Long enough that no NOTIFY on this machine comes later: the by-notify case must
    # never read the topic.
    monkeypatch.setattr(commandbus, "KAFKA_FALLBACK_AFTER", 5.0 if notified else 0.05)
    host = ActorHost(settings, pool)
    if not notified:
        monkeypatch.setattr(host.notifier, "send", lambda *a: False)
    stop = asyncio.Event()
    running = asyncio.create_task(host.run(stop))
    bus = CommandBus(settings, pool=pool)
    try:
        await bus.start()
        assert bus._channel is not None and bus._channel.listening
        # The first command meets a host still joining its group (seconds): not timed.
        assert (await bus.send(initiate(str(uuid.uuid4())), timeout=30)).applied
        consumer = bus._consumer
        assert consumer is not None
        resumed: list[object] = []
        real_resume = consumer.resume

        def recording_resume(*tps: object) -> None:
            resumed.extend(tps)
            real_resume(*tps)

        monkeypatch.setattr(consumer, "resume", recording_resume)
        via = "notify" if notified else "kafka"
        before = _replies(via)
        for _ in range(3):
            result = await bus.send(initiate(str(uuid.uuid4())), timeout=20)
            assert result.applied
        if notified:
            assert resumed == []
        else:
            assert len(resumed) == 3  # once per command, after the wait
        assert _replies(via) - before == 3  # the metric tells which copy answered
        assert not any(bus._fetching.values()) and not any(bus._awaiting.values())
        assert consumer.paused() == set(bus._partitions)  # all paused again
    finally:
        await bus.stop()
        stop.set()
        await asyncio.wait_for(running, 30)
