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
partition of the topic (`due`), recycles it between two batches (`ActorHost._recycle`):

1. under the host's commit lock, forgets what it handled there, stops fetching the topic
   and waits for a fetch already on its way (a fetch that met the topic missing would
   refresh the consumer's metadata, and metadata without the topic rebalances the group
   without it), deletes and at once creates the topic (`replace_topic`: it is missing for
   a millisecond or two), moves its positions to the new topic's start, fetches it again
   and commits offset 0 there (so the group's offsets never point past its end);
2. then NOTIFYs `RECYCLED_CHANNEL` with the topic's name (`announce`).

A produce that meets the topic in that moment is answered with an unknown error (-1),
which Kafka clients do not retry: the sender repeats it a few milliseconds later
(bus/actors/commandbus.py, PUBLISH_RETRIES). The host refreshes its metadata every few
seconds while recycling, so a refresh that happened to fall in the moment anyway costs a
rebalance, not the topic's commands until the next five-minute refresh.

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
from bus.kafka.clients import assert_bootstrap

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


async def replace_topic(settings: Settings, topic: str) -> int:
    """Delete `topic` and create it again, empty, with as many partitions as it had;
    return that count. The topic is missing for a millisecond or two: a consumer whose
    metadata is refreshed in that moment rebalances its group without it (see
    `ActorHost._recycle` for how the host avoids causing that refresh itself)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=assert_bootstrap(settings))
    await admin.start()
    try:
        count = await _partitions(admin, topic)
        await admin.delete_topics([topic])
        new = NewTopic(topic, count, settings.kafka_replication_factor)
        for _ in range(500):
            try:
                await admin.create_topics([new])
                break
            except TopicAlreadyExistsError:
                await asyncio.sleep(0.002)  # (the delete has not taken effect yet)
        else:
            raise RuntimeError(f"{topic} was not deleted")
        for _ in range(200):
            if topic in await admin.list_topics():
                break
            await asyncio.sleep(0.005)
        made = await _partitions(admin, topic)
    finally:
        await admin.close()
    if made != count:
        raise RuntimeError(f"{topic} came back with {made} partitions, not {count}")
    return count


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
