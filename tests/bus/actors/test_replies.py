"""Replies by NOTIFY beside Kafka (bus/actors/replies.py): the sender takes whichever copy
comes first, and a reply that cannot be notified still arrives by Kafka.

Against the real broker and Postgres: an actor host and command buses in this process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest
import pytest_asyncio

from bus.actors import replies
from bus.actors.commandbus import CommandBus
from bus.actors.host import ActorHost
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics
from domain.commands import InitiateUpload
from tests.system import wait_until

pytestmark = pytest.mark.timeout(90)

AT = datetime(2026, 1, 1, tzinfo=UTC)
N = 8


def initiate(uid: str) -> InitiateUpload:
    return InitiateUpload(
        aggregate_id=uid,
        caller="alice",
        at=AT,
        command_id=f"init-{uid}",
        file_name="f",
        file_size=30,
        chunk_size=10,
    )


def test_a_notice_carries_the_command_id_before_the_reply() -> None:
    reply = orjson.dumps({"ok": True, "state": {"file_name": "é"}, "command_id": "c1"})
    payload = replies.encode(b"c1", reply)
    assert payload is not None
    command_id, parse = replies.decode(payload)
    assert command_id == "c1"
    assert parse() == orjson.loads(reply)


def test_a_reply_over_the_notify_limit_is_not_notified() -> None:
    # Counted in bytes, as Postgres counts its 8000-byte limit: 2 bytes per "é".
    big = orjson.dumps({"name": "é" * (replies.MAX_PAYLOAD // 2)})
    assert len(big.decode()) < replies.MAX_PAYLOAD < len(big)
    assert replies.encode(b"c1", big) is None


@pytest_asyncio.fixture(loop_scope="session")
async def host(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[ActorHost]:
    await ensure_topics(settings)
    actor_host = ActorHost(settings, pool)
    stop = asyncio.Event()
    running = asyncio.create_task(actor_host.run(stop))
    try:
        yield actor_host
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def _send_all(bus: CommandBus) -> None:
    for _ in range(N):
        uid = str(uuid.uuid4())
        result = await bus.send(initiate(uid))
        assert result.applied
        assert result.state is not None and result.state["file_size"] == 30


async def test_replies_arrive_by_notify_and_by_kafka(settings: Settings, host: ActorHost) -> None:
    listening = CommandBus(settings, listen_replies=True)
    kafka_only = CommandBus(settings)
    await listening.start()
    await kafka_only.start()
    try:

        async def connected() -> bool:
            return listening.listening

        await wait_until(connected, timeout=20)
        await _send_all(listening)
        await _send_all(kafka_only)
    finally:
        await listening.stop()
        await kafka_only.stop()
    # Without a LISTEN, every answer is the Kafka copy.
    assert kafka_only.answered == {"kafka": N, "notify": 0}
    # With it, the notification wins (its Kafka copy waits for the next fetch deadline);
    # "most" rather than "all": a reply can still win on a fetch that just returns.
    assert listening.answered["notify"] + listening.answered["kafka"] == N
    assert listening.answered["notify"] > N // 2


async def test_a_reply_too_big_to_notify_comes_by_kafka(
    settings: Settings, host: ActorHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replies, "MAX_PAYLOAD", 10)  # no reply fits
    bus = CommandBus(settings, listen_replies=True)
    await bus.start()
    try:

        async def connected() -> bool:
            return bus.listening

        await wait_until(connected, timeout=20)
        await _send_all(bus)
    finally:
        await bus.stop()
    assert bus.answered == {"kafka": N, "notify": 0}


async def test_reply_notify_off_means_kafka_only(settings: Settings, pool: asyncpg.Pool) -> None:
    off = replace(settings, reply_notify=False)
    await ensure_topics(off)
    # The host does not notify: a sender that listens gets the Kafka copies.
    actor_host = ActorHost(off, pool)
    stop = asyncio.Event()
    running = asyncio.create_task(actor_host.run(stop))
    listening = CommandBus(settings, listen_replies=True)
    # A sender told not to listen does not.
    deaf = CommandBus(off, listen_replies=True)
    await listening.start()
    await deaf.start()
    try:

        async def connected() -> bool:
            return listening.listening

        await wait_until(connected, timeout=20)
        await _send_all(listening)
        await _send_all(deaf)
        assert not deaf.listening
    finally:
        await listening.stop()
        await deaf.stop()
        stop.set()
        await asyncio.wait_for(running, 30)
    assert listening.answered == {"kafka": N, "notify": 0}
    assert deaf.answered == {"kafka": N, "notify": 0}
