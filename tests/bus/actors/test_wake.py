"""An idle actor host stops fetching and is woken by a sender's nudge (bus/actors/wake.py).

Against the real broker and Postgres: the gate pauses the consumer's partitions once idle,
a `Nudger` (NOTIFY) resumes them, and a message nobody announced is still found by a peek.
The idle and peek intervals are shortened for the test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from bus.actors import wake
from bus.aio import Stopped, unless_stopped
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, make_consumer, make_producer
from tests.system import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def short_intervals(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    monkeypatch.setattr(wake, "IDLE_AFTER", 0.3)
    # Where the nudge is under test, no peek may wake the host instead.
    peek = 0.3 if "peek" in request.node.name else 600.0
    monkeypatch.setattr(wake, "PEEK_EVERY", peek)
    monkeypatch.setattr(wake, "NUDGE_EVERY", 0.0)


@pytest_asyncio.fixture(loop_scope="session")
async def topic(settings: Settings) -> str:
    name = f"{settings.topic_prefix}.wake-test"
    await ensure_topics(settings, [name])
    return name


class Loop:
    """The actor host's loop shape, recording what it received."""

    def __init__(self, consumer: AIOKafkaConsumer, gate: wake.IdleGate) -> None:
        self.consumer, self.gate = consumer, gate
        self.received: list[bytes] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            await self.gate.wait_for_work(self.stop)
            try:
                batch = await unless_stopped(
                    self.consumer.getmany(timeout_ms=self.gate.poll_ms), self.stop
                )
            except Stopped:
                return
            # Like the actor host, which does not count readiness probes as work.
            self.gate.after_poll(any(r.value != b"probe" for rs in batch.values() for r in rs))
            for records in batch.values():
                self.received += [r.value for r in records]

    def paused(self) -> bool:
        assigned = self.consumer.assignment()
        return bool(assigned) and self.consumer.paused() == assigned


@pytest_asyncio.fixture(loop_scope="session")
async def loop(settings: Settings, pool: asyncpg.Pool, topic: str) -> AsyncIterator[Loop]:
    consumer = make_consumer(settings, topic, group_id=f"{topic}-g", latency_critical=True)
    await consumer.start()
    gate = wake.IdleGate(consumer)
    await gate.listen(pool)
    lp = Loop(consumer, gate)
    task = asyncio.create_task(lp.run())
    try:
        yield lp
    finally:
        lp.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await gate.close(pool)
        await consumer.stop()


async def send(
    settings: Settings, topic: str, value: bytes, before: Callable[[], None] | None = None
) -> None:
    """Produce one message; `before` runs once the producer is connected, just before it."""
    producer = make_producer(settings)
    await producer.start()
    try:
        if before is not None:
            before()
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def until_received(lp: Loop, value: bytes) -> None:
    async def got() -> bool:
        return value in lp.received

    await wait_until(got, timeout=20)


async def _paused(lp: Loop) -> bool:
    return lp.paused()


async def _awake(lp: Loop) -> bool:
    return not lp.paused()


async def test_idle_host_pauses_and_a_nudge_wakes_it(
    loop: Loop, pool: asyncpg.Pool, settings: Settings, topic: str
) -> None:
    await wait_until(lambda: _paused(loop), timeout=20)
    nudge = wake.Nudger(pool)
    nudge()
    await wait_until(lambda: _awake(loop), timeout=20)
    # Nudged again just before the message, as the command bus does: the host stays awake
    # only IDLE_AFTER (0.3 s here), which a producer's start on a loaded machine can outlast.
    await send(settings, topic, b"announced", before=nudge)
    await until_received(loop, b"announced")
    # And idle again afterwards.
    await wait_until(lambda: _paused(loop), timeout=20)


async def test_a_probe_makes_the_host_peek_and_pause_again_without_staying_awake(
    loop: Loop, pool: asyncpg.Pool, settings: Settings, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A readiness probe's NOTIFY (payload PROBE) is answered at once, yet the host does not
    stay awake for IDLE_AFTER as after a command's nudge: polling /ready keeps nothing
    fetching. No timed peek can answer here (PEEK_EVERY is 600 s in this test)."""
    await wait_until(lambda: _paused(loop), timeout=20)
    monkeypatch.setattr(wake, "IDLE_AFTER", 600.0)  # a command's nudge would wake it for 600 s
    await send(settings, topic, b"probe", before=wake.Nudger(pool).probe)
    await until_received(loop, b"probe")
    await wait_until(lambda: _paused(loop), timeout=5)


async def test_unannounced_message_is_found_by_a_peek(
    loop: Loop, settings: Settings, topic: str
) -> None:
    await wait_until(lambda: _paused(loop), timeout=20)
    await send(settings, topic, b"unannounced")
    await until_received(loop, b"unannounced")


async def test_an_append_wakes_a_gate_on_the_event_channel(
    settings: Settings, pool: asyncpg.Pool, topic: str
) -> None:
    """The projector's and the handlers' gate: LISTENing on the event store's channel, an
    append (which NOTIFYs it in its transaction) resumes fetching."""
    import uuid
    from datetime import UTC, datetime

    from bus.actors.host import Actors
    from bus.store.eventstore import NOTIFY_CHANNEL, PostgresEventStore
    from domain.commands import InitiateUpload

    consumer = make_consumer(settings, topic, group_id=f"{topic}-events")
    await consumer.start()
    gate = wake.IdleGate(consumer, NOTIFY_CHANNEL, peek_every=600.0)
    await gate.listen(pool)
    lp = Loop(consumer, gate)
    task = asyncio.create_task(lp.run())
    try:
        await wait_until(lambda: _paused(lp), timeout=20)
        reply = await Actors(PostgresEventStore(pool)).execute(
            InitiateUpload(
                aggregate_id=str(uuid.uuid4()),
                caller="alice",
                at=datetime.now(UTC),
                file_name="a.bin",
                file_size=1,
                chunk_size=1,
            )
        )
        assert reply["ok"] and reply["events"], reply
        await wait_until(lambda: _awake(lp), timeout=20)
    finally:
        lp.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await gate.close(pool)
        await consumer.stop()
