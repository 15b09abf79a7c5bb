"""Init container of every Cairn Deployment: wait until the setup Job has done its work.

Blocks until every SQL migration shipped in the image is recorded in the database and
every Cairn Kafka topic exists, then exits 0. It changes nothing itself: the `cairn-setup`
Job applies migrations and creates topics, so a rollout whose image brings a new migration
waits (pods stay in Init, the old ones keep serving) until that Job has run.

Why not just start: a process that starts before its topics exist either waits for a
metadata refresh (consumers) or, for the api, reads only the partitions it saw at
start-up; and code newer than the schema fails on its first query.

Mounted from the `cairn-deploy-scripts` ConfigMap (kustomize configMapGenerator) and run
with the image's Python: `python /opt/cairn/wait-for-setup.py`.
"""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from bus.config.settings import Settings
from bus.kafka.clients import all_topics
from bus.store.db import MIGRATIONS_DIR

POLL_SECONDS = 2.0
REPORT_EVERY = 30.0


async def missing_migrations(url: str) -> list[str]:
    wanted = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    conn = await asyncpg.connect(url, timeout=10)
    try:
        table = await conn.fetchval("SELECT to_regclass('public.cairn_migrations')")
        done = (
            {r["name"] for r in await conn.fetch("SELECT name FROM public.cairn_migrations")}
            if table
            else set()
        )
    finally:
        await conn.close()
    return [name for name in wanted if name not in done]


async def missing_topics(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap or "", request_timeout_ms=10000
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [t for t in all_topics(settings) if t not in existing]


async def main() -> int:
    settings = Settings.from_env()
    if not settings.database_url or not settings.kafka_bootstrap:
        print(
            "wait-for-setup: CAIRN_DATABASE_URL and CAIRN_KAFKA_BOOTSTRAP must be set",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    last_report = -REPORT_EVERY
    while True:
        try:
            migrations = await missing_migrations(settings.database_url)
            topics = await missing_topics(settings)
            status = (
                f"missing migrations: {', '.join(migrations) or 'none'}; "
                f"missing topics: {', '.join(topics) or 'none'}"
            )
            if not migrations and not topics:
                print("wait-for-setup: database migrated and topics present", flush=True)
                return 0
        except Exception as e:  # not reachable yet: keep waiting, say why now and then
            status = f"not reachable yet ({type(e).__name__}: {e})"
        now = time.monotonic()
        if now - last_report >= REPORT_EVERY:
            print(
                f"wait-for-setup: waiting for the cairn-setup Job ({now - started:.0f}s): {status}",
                flush=True,
            )
            last_report = now
        await asyncio.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
