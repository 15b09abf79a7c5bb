"""Recycling a command topic: delete it and create it again, empty, once it has carried
`CAIRN_KAFKA_COMMAND_RECYCLE_AFTER` commands in a partition (`cairn up` sets it for the
embedded broker; 0, the default, never does).

Why: the embedded broker (Tansu 0.6.0's memory engine) keeps every record until it stops,
stores each batch (a command is sent alone: one batch) as an object of its own, and lists
every object of a partition on each fetch that finds new records there. A command partition
so got slower with every command it had carried, then stalled for seconds past some 20,000
(`python -m tests.bench.broker_aging --one-per-batch`, README "Performance"). It honours
neither retention nor DeleteRecords; deleting the topic is the one thing that frees it.

A command topic holds nothing that matters once handled: a command's outcome is in the
event store, and its sender waits for the reply. So the actor host, holding every
partition of the topic (`due`), recycles it (`ActorHost._recycle`):

1. only once it has been idle for a moment (no command batch for half a second, its idle
   gate has paused every partition, so no fetch is on its way), holding the gate paused
   (a nudge waits), the batch lock and the commit lock, it forgets what it handled there,
   deletes and at once creates the topic (`replace_topic`: it is missing for a
   millisecond or two), moves its positions to the new topic's start and commits offset
   0 there (so the group's offsets never point past its end);
2. then NOTIFYs `RECYCLED_CHANNEL` with the topic's name (`announce`).

Why only when idle (measured, 2026-12-05): recycling under load, between two batches,
lost commands for seconds in about one recycle in 300 (`tests.bench.command_aging` and a
stress test of 32 concurrent tus uploads). In the moment the topic is missing the embedded
broker answers a produce with an unknown error (-1), which Kafka clients do not retry,
and it creates the topic for any client whose metadata request names it, with its own
default partition count; a consumer whose metadata then changes rebalances its group.
Idle, no sender is producing and the host is not fetching. A produce that still meets the
moment is repeated by its sender a few milliseconds later (bus/actors/commandbus.py,
PUBLISH_RETRIES); a topic created by someone else's metadata request with another
partition count is deleted again (`replace_topic`).

A steady stream of commands with no half-second pause is not recycled until it pauses.

A command produced to the old topic after the host's last fetch was deleted with it. Its
sender is still waiting for the reply: on the notification each sender
(bus/actors/commandbus.py) sends every command it awaits on that topic again, with the same
command id, into the new topic. The host applies a command once and answers a repeat from
the events it appended (`eventstore.applied_commands`), so a resend of one that was already
handled costs a duplicate reply and nothing else. A sender that misses the notification
(its LISTEN connection was lost) resends those commands anyway (its channel-lost path), or
else times out and answers 503, which the client retries: never a lost acknowledged
command.

If the host dies between the delete and the commit, the group's offsets point past the new
topic's end, where the embedded broker answers every fetch with nothing (it reports no
out-of-range); a host that is assigned such a partition starts it from the beginning
(`past_the_end`).

Against a real Kafka (deploy/) leave it at 0: the topics' retention trims them, and with
several actor hosts no host holds every partition of a topic, so none would recycle it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from bus.config.settings import Settings
from bus.kafka.clients import MAX_MESSAGE_BYTES, admin_client

RECYCLED_CHANNEL = "cairn_commands_recycled"


def due(
    settings: Settings,
    handled: Mapping[tuple[str, int], int],
    assignment: Iterable[TopicPartition],
    partitions: Mapping[str, int],
) -> list[str]:
    """The command topics to recycle now: a partition of theirs has handled the command at
    offset `kafka_command_recycle_after - 1` or later, and this consumer holds every one of
    their `partitions[topic]` partitions (another host reading one would lose its place)."""
    after = settings.kafka_command_recycle_after
    if after <= 0:
        return []
    held: dict[str, int] = {}
    for tp in assignment:
        held[tp.topic] = held.get(tp.topic, 0) + 1
    full = {topic for (topic, _), offset in handled.items() if offset + 1 >= after}
    return sorted(t for t in full if t in partitions and held.get(t) == partitions[t])


async def replace_topic(settings: Settings, topic: str, count: int) -> None:
    """Delete `topic` and create it again, empty, with its `count` partitions.

    The topic is missing for a millisecond or two, and the embedded broker creates a topic
    that any client's metadata request names (Kafka clients ask for that), with its own
    default partition count: if one did in that moment, the topic is deleted again."""
    async with admin_client(settings) as admin:
        for _ in range(5):
            await admin.delete_topics([topic])
            for _ in range(500):
                try:
                    await admin.create_topics(
                        [
                            NewTopic(
                                topic,
                                count,
                                settings.kafka_replication_factor,
                                # as ensure_topics creates it (bus/kafka/clients.py new_topics)
                                topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
                            )
                        ]
                    )
                    break
                except TopicAlreadyExistsError:
                    await asyncio.sleep(0.002)  # deleted a moment later, or created by another
            for _ in range(200):
                if topic in await admin.list_topics():
                    break
                await asyncio.sleep(0.005)
            if await _partitions(admin, topic) == count:
                return
        raise RuntimeError(f"{topic} did not come back with {count} partitions")


async def _partitions(admin: AIOKafkaAdminClient, topic: str) -> int:
    (described,) = await admin.describe_topics([topic])
    return len(described["partitions"])


async def announce(pool: asyncpg.Pool, topic: str) -> None:
    """Tell every sender that `topic` was recycled: they send what they await there again."""
    await pool.execute("SELECT pg_notify($1, $2)", RECYCLED_CHANNEL, topic)


async def past_the_end(
    consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition]
) -> list[TopicPartition]:
    """Of `tps` (assigned to `consumer`), those whose committed offset is past their end: a
    recycle was cut off before it committed the new topic's start."""
    tps = list(tps)
    if not tps:
        return []
    ends = await consumer.end_offsets(tps)
    late = []
    for tp in tps:
        committed = await consumer.committed(tp)
        if committed is not None and committed > ends[tp]:
            late.append(tp)
    return late
