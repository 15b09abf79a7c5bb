"""Replies by NOTIFY (bus/actors/fastreply.py), against the real PostgreSQL and broker: a
sender with a pool gets its reply on its own channel, and the host publishes nothing on the
reply topic for it; the host sends what queues up during a NOTIFY in one statement; a
header naming some other channel goes by Kafka only, a reply too long for NOTIFY by Kafka
with an empty NOTIFY pointing there, a failed NOTIFY by Kafka; a sender whose LISTEN
connection dies, loudly or silently, sends its waiting commands again without the channel
and gets their replies by Kafka, stops naming the channel and listens again later."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from bus.actors import commandbus, fastreply
from bus.actors.commandbus import BusUnavailable, CommandBus
from bus.actors.fastreply import CHANNEL_HEADER, ReplyChannel, ReplyNotifier, valid_channel
from bus.actors.host import ActorHost
from bus.actors.wake import Nudger
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics
from bus.store import db
from tests.bus.actors.test_host import initiate
from tests.system import wait_until

pytestmark = pytest.mark.timeout(120)


def _replies(via: str) -> float:
    return REGISTRY.get_sample_value("cairn_command_replies_total", {"via": via}) or 0.0


async def _no_kafka_replies(records: tuple[Any, ...]) -> None:
    """Stands in for CommandBus._on_replies: the reply topic brings nothing."""


@contextlib.asynccontextmanager
async def _host_and_sender(
    settings: Settings,
    pool: asyncpg.Pool,
    *,
    with_pool: bool = True,
    on_replies: Any = None,
    nudge: bool = False,
) -> AsyncIterator[tuple[ActorHost, CommandBus]]:
    """A running actor host and a started sender (with a channel if `with_pool`; waking
    the host as the API's does if `nudge`)."""
    await ensure_topics(settings)
    host = ActorHost(settings, pool)
    stop = asyncio.Event()
    running = asyncio.create_task(host.run(stop))
    bus = CommandBus(
        settings, pool=pool if with_pool else None, nudge=Nudger(pool) if nudge else None
    )
    if on_replies is not None:
        bus._on_replies = on_replies  # type: ignore[method-assign]
    try:
        await bus.start()
        yield host, bus
    finally:
        await bus.stop()
        stop.set()
        await asyncio.wait_for(running, 30)


@pytest.mark.parametrize("with_pool", [True, False], ids=["notify", "kafka-only"])
async def test_a_reply_comes_by_notify_when_the_reply_topic_brings_nothing(
    settings: Settings, pool: asyncpg.Pool, with_pool: bool
) -> None:
    async with _host_and_sender(
        settings, pool, with_pool=with_pool, on_replies=_no_kafka_replies
    ) as (host, bus):
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


async def test_the_notifier_batches_what_queues_up_and_skips_what_it_cannot_send(
    pool: asyncpg.Pool,
) -> None:
    got: list[tuple[str, bytes]] = []
    channel = ReplyChannel(pool, lambda cid, body: got.append((cid, body)))
    assert await channel.listen()
    notifier = ReplyNotifier(pool)
    try:
        # Queued in one go: the first starts a flush, the rest wait for the next one.
        sent = [notifier.send(channel.name, f"c{i}", b'{"ok":true,"n":%d}' % i) for i in range(5)]
        # Not a channel of ours (a command cannot make the host NOTIFY anything else)...
        assert notifier.send("cairn_events", "x", b"{}") is None
        assert notifier.send(None, "x", b"{}") is None
        # ...and too long for NOTIFY: Kafka carries it, and an empty NOTIFY says so.
        assert notifier.send(channel.name, "big", b"x" * fastreply.MAX_PAYLOAD) is None
        assert all(f is not None for f in sent)
        assert [await f for f in sent if f is not None] == [True] * 5

        async def all_six() -> bool:
            return len(got) == 6

        await wait_until(all_six, timeout=10)
        await notifier.close()
        assert got == [(f"c{i}", b'{"ok":true,"n":%d}' % i) for i in range(5)] + [("big", b"")]
        assert notifier.statements <= 2  # one for the first, one for the five behind it
    finally:
        await channel.close()


@contextlib.asynccontextmanager
async def _closed_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool of the real PostgreSQL, closed: every statement on it fails."""
    assert settings.database_url is not None
    closed = await db.create_pool(settings.database_url, min_size=1, max_size=1)
    await closed.close()
    yield closed


async def test_a_failed_notify_says_so_so_that_the_host_publishes_the_reply(
    settings: Settings,
) -> None:
    async with _closed_pool(settings) as closed:
        notifier = ReplyNotifier(closed)
        done = notifier.send(f"cairn_reply_{uuid.uuid4().hex}", "c1", b'{"ok":true}')
        assert done is not None
        assert await asyncio.wait_for(done, 5) is False
        assert notifier.statements == 0


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


@pytest.mark.parametrize("case", ["by-notify", "no-notify", "notify-failed"])
async def test_the_reply_topic_is_read_only_when_no_notify_came_in_time(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """A sender whose channel listens leaves its reply partition paused while the reply
    comes by NOTIFY; when none comes (a host that sends none, or whose NOTIFY failed and
    so published the reply), it reads the reply topic after KAFKA_FALLBACK_AFTER, from
    before the reply, and still gets it."""
    notified = case == "by-notify"
    # By NOTIFY: longer than each send's own timeout, so the fallback's timer cannot fire
    # before the send ends; a reply that came any other way than by NOTIFY would leave the
    # send unanswered (BusUnavailable), not pass. (5 s was "longer than any NOTIFY takes
    # here", which a loaded machine's round trip outlasted: the timer read the topic.)
    monkeypatch.setattr(commandbus, "KAFKA_FALLBACK_AFTER", 60.0 if notified else 0.05)
    async with _host_and_sender(settings, pool) as (host, bus), _closed_pool(settings) as closed:
        if case == "no-notify":
            monkeypatch.setattr(host.notifier, "send", lambda *a: None)
        elif case == "notify-failed":
            # Its NOTIFY statements fail (PostgreSQL unreachable from the notifier).
            monkeypatch.setattr(host.notifier, "pool", closed)
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


async def _reply_records(bus: CommandBus) -> int:
    """Every record the reply topic holds (the sum of its partitions' end offsets)."""
    assert bus._consumer is not None
    ends = await bus._consumer.end_offsets(bus._partitions)
    return sum(ends.values())


@pytest.mark.parametrize("with_pool", [True, False], ids=["channel", "no-channel"])
async def test_the_host_publishes_no_reply_on_the_topic_for_a_listening_sender(
    settings: Settings, pool: asyncpg.Pool, with_pool: bool
) -> None:
    async with _host_and_sender(settings, pool, with_pool=with_pool) as (_, bus):
        assert (await bus.send(initiate(str(uuid.uuid4())), timeout=30)).applied
        before = await _reply_records(bus)
        for _ in range(3):
            assert (await bus.send(initiate(str(uuid.uuid4())), timeout=20)).applied
        # The control: a sender that names no channel gets its three replies on the topic.
        assert await _reply_records(bus) - before == (0 if with_pool else 3)


async def test_a_reply_too_long_for_notify_is_read_from_the_topic_at_once(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host publishes it and NOTIFYs an empty body: the sender reads the topic then,
    not after KAFKA_FALLBACK_AFTER (made longer than the test's wait here)."""
    monkeypatch.setattr(commandbus, "KAFKA_FALLBACK_AFTER", 60.0)
    monkeypatch.setattr(fastreply, "MAX_PAYLOAD", 20)  # every reply is too long
    async with _host_and_sender(settings, pool) as (_, bus):
        assert bus._channel is not None and bus._channel.listening
        before = _replies("kafka")
        for _ in range(2):
            assert (await bus.send(initiate(str(uuid.uuid4())), timeout=20)).applied
        assert _replies("kafka") - before == 2


async def _stream_version(pool: asyncpg.Pool, stream_id: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT coalesce(max(version), 0) FROM eventstore.events WHERE stream_id = $1",
            stream_id,
        )
    )


async def test_commands_waiting_on_a_lost_channel_are_sent_again_and_answered_by_kafka(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel's connection ends while a command waits for its reply there: the
    command goes again without the channel, the host applies it once and answers the
    repeat on the topic."""
    await ensure_topics(settings)
    monkeypatch.setattr(commandbus, "KAFKA_FALLBACK_AFTER", 60.0)  # only the loss may act
    bus = CommandBus(settings, pool=pool)
    host = ActorHost(settings, pool)
    stop = asyncio.Event()
    running: asyncio.Task[None] | None = None
    try:
        await bus.start()
        channel = bus._channel
        assert channel is not None and channel.listening
        cmd = initiate(str(uuid.uuid4()))
        # No host yet: the command waits, named with the channel.
        sending = asyncio.create_task(bus.send(cmd, timeout=60))

        async def waiting() -> bool:
            return cmd.command_id in bus._by_channel

        await wait_until(waiting, timeout=10)
        before = _replies("kafka")
        await pool.execute("SELECT pg_terminate_backend($1)", channel._conn.get_server_pid())
        # The host comes: its NOTIFY to the dead channel reaches no one.
        running = asyncio.create_task(host.run(stop))
        result = await asyncio.wait_for(sending, 45)
        assert result.command_id == cmd.command_id and result.version == 1
        assert _replies("kafka") - before == 1
        assert await _stream_version(pool, cmd.stream_id) == 1  # applied once
    finally:
        await bus.stop()
        stop.set()
        if running is not None:
            await asyncio.wait_for(running, 30)


class _Silent:
    """A connection that no longer answers (its TCP peer gone without a word)."""

    async def fetchval(self, *args: object) -> object:
        await asyncio.Event().wait()
        return None


async def test_a_silently_dead_channel_is_found_when_a_reply_is_late(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commandbus, "KAFKA_FALLBACK_AFTER", 0.05)
    monkeypatch.setattr(fastreply, "CHECK_TIMEOUT", 0.2)
    real: Any = None
    async with _host_and_sender(settings, pool) as (_, bus):
        channel = bus._channel
        assert channel is not None and channel.listening
        assert (await bus.send(initiate(str(uuid.uuid4())), timeout=30)).version == 1
        # The connection goes quiet: nothing reaches the channel, and it answers nothing.
        real = channel._conn
        for name in channel._channels:  # its own and the recycling's
            await real.remove_listener(name, channel._on_notify)
        channel._conn = _Silent()
        before = _replies("kafka")
        cmd = initiate(str(uuid.uuid4()))
        result = await bus.send(cmd, timeout=20)
        # By the topic: the host NOTIFYs a command that names the channel, so only the
        # command sent again without it (once the check timed out) was answered there.
        assert result.version == 1 and _replies("kafka") - before == 1
        assert await _stream_version(pool, cmd.stream_id) == 1
    with contextlib.suppress(Exception):
        await pool.release(real)
