"""The actor host commits its offsets from what it handled, not after every batch
(bus/actors/host.py, ActorHost.commit): a timer commits the last batches once they stop
coming, a graceful stop and a revocation commit what was handled. Against the real broker
and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import asyncpg
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus.actors import host as host_module
from bus.actors.host import ActorHost
from bus.config.settings import Settings
from bus.kafka.clients import assert_bootstrap, ensure_topics, make_producer
from domain.commands import command_to_dict
from tests.bus.actors.test_host_batches import initiate
from tests.system import wait_until

pytestmark = pytest.mark.timeout(120)


async def send_initiates(settings: Settings, n: int) -> tuple[list[str], dict[TopicPartition, int]]:
    """Produce `n` InitiateUpload commands; their stream ids, and the offset after the
    last one in each partition they went to."""
    uids = [str(uuid.uuid4()) for _ in range(n)]
    ends: dict[TopicPartition, int] = {}
    producer = make_producer(settings)
    await producer.start()
    try:
        for uid in uids:
            cmd = initiate(uid)
            md = await producer.send_and_wait(
                settings.command_topic(cmd.aggregate),
                orjson.dumps({**command_to_dict(cmd), "command_id": cmd.command_id}),
                key=cmd.aggregate_id.encode(),
                headers=[
                    ("command-id", cmd.command_id.encode()),
                    ("command-type", cmd.type.encode()),
                ],
            )
            tp = TopicPartition(md.topic, md.partition)
            ends[tp] = max(ends.get(tp, 0), md.offset + 1)
    finally:
        await producer.stop()
    return [f"upload-{u}" for u in uids], ends


async def committed(
    settings: Settings, group: str, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offsets, asked without joining it (no rebalance)."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=assert_bootstrap(settings), group_id=group, enable_auto_commit=False
    )
    await reader.start()
    try:
        return {tp: (await reader.committed(tp)) or -1 for tp in tps}
    finally:
        await reader.stop()


async def covers(settings: Settings, group: str, ends: dict[TopicPartition, int]) -> bool:
    now = await committed(settings, group, ends)
    return all(now.get(tp, -1) >= end for tp, end in ends.items())


@asynccontextmanager
async def running(settings: Settings, pool: asyncpg.Pool, group: str) -> AsyncIterator[ActorHost]:
    host = ActorHost(settings, pool, group_id=group)
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    try:
        yield host
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def applied(pool: asyncpg.Pool, streams: list[str]) -> bool:
    n = await pool.fetchval(
        "SELECT count(*) FROM eventstore.events WHERE stream_id = ANY($1::text[])", streams
    )
    return bool(n == len(streams))


async def test_the_last_batches_are_committed_once_commands_stop_coming(
    settings: Settings, pool: asyncpg.Pool, group: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_module, "COMMIT_EVERY", 0.3)
    async with running(settings, pool, group):
        for _ in range(2):  # the second round comes within COMMIT_EVERY of a commit
            streams, ends = await send_initiates(settings, 5)
            await wait_until(lambda s=streams: applied(pool, s), timeout=60)
            # No batch follows: the timer commits them.
            await wait_until(lambda e=ends: covers(settings, group, e), timeout=30)


@pytest_asyncio.fixture(loop_scope="session")
async def group(settings: Settings) -> str:
    """A consumer group of its own (so no other test's offsets count), topics created."""
    await ensure_topics(settings)
    return f"commits-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def no_timer_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_module, "COMMIT_EVERY", 600.0)


async def handled_not_committed(
    settings: Settings, pool: asyncpg.Pool, group: str
) -> dict[TopicPartition, int]:
    """Send commands and wait until the running host applied them; with no timer commit
    (COMMIT_EVERY patched long) their offsets are not committed yet. Their ends."""
    streams, ends = await send_initiates(settings, 5)
    await wait_until(lambda: applied(pool, streams), timeout=60)
    assert not await covers(settings, group, ends), "committed within COMMIT_EVERY"
    return ends


@pytest.mark.usefixtures("no_timer_commit")
async def test_a_graceful_stop_commits_what_was_handled(
    settings: Settings, pool: asyncpg.Pool, group: str
) -> None:
    async with running(settings, pool, group):
        ends = await handled_not_committed(settings, pool, group)
    assert await covers(settings, group, ends)


@pytest.mark.usefixtures("no_timer_commit")
async def test_a_revocation_commits_what_was_handled_in_the_partitions_given_up(
    settings: Settings, pool: asyncpg.Pool, group: str
) -> None:
    async with running(settings, pool, group) as first:
        ends = await handled_not_committed(settings, pool, group)
        alone = len(first.assigned)
        # A second host joins: the first gives up its partitions (aiokafka revokes them all
        # before assigning again), committing what it handled in them first.
        async with running(settings, pool, group):

            async def split() -> bool:
                return 0 < len(first.assigned) < alone

            await wait_until(split, timeout=60)
            assert await covers(settings, group, ends)
            # What it gave up is forgotten: no later commit of its own can move them back.
            held = {(tp.topic, tp.partition) for tp in first.assigned}
            assert set(first.handled) <= held
