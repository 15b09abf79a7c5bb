"""The actor host over the real broker: a poll batch runs each aggregate's commands in
order and different aggregates concurrently, so their appends share group commits."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import asyncpg
import orjson

from bus.actors.host import ActorHost
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, make_producer
from domain.commands import Command, command_to_dict
from tests.bus.actors.uploads import chunk, initiate
from tests.system import wait_until

UPLOADS = 24


async def test_one_partition_batch_keeps_aggregate_order_and_shares_commits(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # One partition: every command below lands in the same partition, in this order.
    settings = replace(settings, kafka_partitions=1)
    await ensure_topics(settings)
    ordered = str(uuid.uuid4())  # initiate, then chunks 0..2: each needs the one before
    others = [str(uuid.uuid4()) for _ in range(UPLOADS)]
    commands: list[Command] = [initiate(ordered)]
    for k, uid in enumerate(others):
        commands.append(initiate(uid))
        if k < 3:
            commands.append(chunk(ordered, k))
    # Everything is in the topic before the host starts, so its first polls see it all.
    producer = make_producer(settings)
    await producer.start()
    try:
        for cmd in commands:
            body = {**command_to_dict(cmd), "command_id": cmd.command_id}
            await producer.send_and_wait(
                settings.command_topic(cmd.aggregate),
                orjson.dumps(body),
                key=cmd.aggregate_id.encode(),
                headers=[
                    ("command-id", cmd.command_id.encode()),
                    ("command-type", cmd.type.encode()),
                ],
            )
    finally:
        await producer.stop()

    streams = [f"upload-{u}" for u in [ordered, *others]]
    host = ActorHost(settings, pool)
    stop = asyncio.Event()
    running = asyncio.create_task(host.run(stop))
    try:

        async def all_applied() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM eventstore.events WHERE stream_id = ANY($1::text[])",
                streams,
            )
            return bool(n == len(commands))

        await wait_until(all_applied, timeout=60)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)

    # The ordered aggregate's commands were applied in their order, each accepted.
    rows = await pool.fetch(
        "SELECT version, event_type, data FROM eventstore.events WHERE stream_id = $1"
        " ORDER BY version",
        f"upload-{ordered}",
    )
    assert [r["event_type"] for r in rows] == ["UploadInitiated"] + ["UploadChunkStored"] * 3
    assert [r["data"]["index"] for r in rows[1:]] == [0, 1, 2]
    # The independent initiates went through in fewer transactions than commands.
    transactions = await pool.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM eventstore.events"
        " WHERE stream_id = ANY($1::text[])",
        streams,
    )
    assert transactions < len(commands)
