"""`python -m tests.bench.broker_aging`: how the embedded broker slows down with what it holds.

Issue 13 found the command round trip slower after gigabytes of traffic than on a fresh
system. This measures why, on the Tansu binary Cairn ships, with nothing of Cairn's but
its Kafka settings: a 2-hop echo (request -> echo -> reply, the shape of a command round
trip) whose request partition holds N records already, against the same echo on a fresh
topic, and against one whose N records sit in another partition of the request topic.
The broker's CPU per echo is read from its process.

What it showed (2026-12-02, README "Performance"): an echo through a partition of 200,000
records cost the broker 13 ms of CPU, against about 4 ms with those records in another
partition or topic and about 1 ms with none; p50 18.5 against 9 and 7 ms. (Timed by hand
the same day: a produce to that partition, and an idle fetch at its end, cost what they
cost on a fresh one, so it is the fetch of new records that grows.) Hence one reply
partition at a time per command sender (bus/actors/commandbus.py).

Those records went pipelined, many to a batch. `--one-per-batch` sends them one at a time,
each its own batch, as commands are sent: the memory engine stores a batch per object and
lists every object of a partition on each fetch that finds new records in it
(tansu-storage/src/dynostore.rs, 0.6.0), so this is how a command partition ages
(2026-12-05, README "Performance": 2.6 ms of broker CPU per echo at 4,000 batches, 14 ms
at 16,000, and stalls of seconds at 24,000).

Not a scenario of `just bench` (it compares the broker with itself) and not a test.
Nothing else should run beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

import psutil
from aiokafka import AIOKafkaProducer

from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, make_producer
from bus.run.embedded import EmbeddedKafka, free_port
from tests.bench.bus import WARM_COMMANDS, kafka_echo

RECORD = 700  # about a command's size
ECHOES = 300


FILLERS = 8  # producers filling one record per batch at once


async def fill_one_per_batch(settings: Settings, topic: str, partition: int, n: int) -> None:
    """`n` records into one partition, each sent alone (a batch of its own)."""
    if n <= 0:
        return
    producers = [make_producer(settings) for _ in range(FILLERS)]
    value = b"x" * RECORD

    async def send(producer: AIOKafkaProducer, count: int) -> None:
        await producer.start()
        for i in range(count):
            await producer.send_and_wait(topic, value, key=b"%d" % i, partition=partition)

    try:
        share = [n // FILLERS + (1 if k < n % FILLERS else 0) for k in range(FILLERS)]
        await asyncio.gather(*[send(p, k) for p, k in zip(producers, share, strict=True)])
    finally:
        for producer in producers:
            await producer.stop()


async def fill(settings: Settings, topic: str, partition: int, n: int) -> None:
    """`n` records into one partition, pipelined."""
    producer = make_producer(settings)
    await producer.start()
    try:
        value = b"x" * RECORD
        pending = []
        for i in range(n):
            pending.append(await producer.send(topic, value, key=b"%d" % i, partition=partition))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _ms(samples: list[float], q: float) -> float:
    return 1000 * sorted(samples)[min(len(samples) - 1, int(q * len(samples)))]


async def main(sizes: list[int], one_per_batch: bool = False) -> None:
    filler = fill_one_per_batch if one_per_batch else fill
    kafka = EmbeddedKafka(free_port())
    await asyncio.to_thread(kafka.start)
    try:
        broker = psutil.Process(kafka.proc.pid if kafka.proc else 0)
        settings = dataclasses.replace(
            Settings.from_env({}),
            kafka_bootstrap=kafka.bootstrap,
            topic_prefix="aging",
            kafka_idempotence=False,  # as `cairn up` sets them for the embedded broker
            kafka_fetch_max_wait_ms=10,
            kafka_partitions=2,
        )
        held = {"same": "aging.same", "other": "aging.other"}  # N records in p0 / in p1
        await ensure_topics(settings, [*held.values(), "aging.fresh", "aging.reply"])
        print(
            "records held | where                             | echo p50 / p99 ms | broker CPU ms/echo"
        )
        have = 0
        for n in sizes:
            await filler(settings, held["same"], 0, n - have)
            await filler(settings, held["other"], 1, n - have)
            have = n
            for what, topic in (
                ("in the request partition", held["same"]),
                ("in another partition of its topic", held["other"]),
                ("none (a fresh topic)", "aging.fresh"),
            ):
                cpu0 = sum(broker.cpu_times()[:2])
                samples = await kafka_echo(settings, ECHOES, topics=(topic, "aging.reply"))
                cpu = 1000 * (sum(broker.cpu_times()[:2]) - cpu0) / (ECHOES + WARM_COMMANDS)
                print(
                    f"{n:>12,} | {what:<33} | {_ms(samples, 0.5):6.2f} / {_ms(samples, 0.99):6.2f}"
                    f"   | {cpu:.2f}",
                    flush=True,
                )
    finally:
        kafka.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sizes", default="0,50000,200000", help="records held, comma-separated")
    p.add_argument(
        "--one-per-batch",
        action="store_true",
        help="send the records held one at a time, each a batch (as commands go); try"
        " --sizes 0,4000,16000",
    )
    args = p.parse_args()
    asyncio.run(main([int(x) for x in args.sizes.split(",")], args.one_per_batch))
